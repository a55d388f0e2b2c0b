"""Datasets as Arrow: column types, the labelled schema, checked batches and CSV text from batches.

The Parquet writer builds its schema here; when a dataset carries Arrow record batches
(``Dataset.batches``, computed column-wise by a builder), the CSV and Parquet writers write them
without going through Python rows. The output is byte for byte what the row path writes: the same
checks (types, finite floats), and CSV cells formatted by the same Python functions, called once
per distinct value instead of once per cell.
"""

from __future__ import annotations

import contextlib
import json
import queue
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from qol_app.export.dataset import Column, Dataset
from qol_app.export.writers.base import utc_iso

_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "boolean": pa.bool_(),
}


def arrow_type(column: Column) -> pa.DataType:
    """string -> utf8, integer -> int64, float -> float64, date -> date32, datetime -> timestamp[us, UTC]."""
    return _TYPES[column.type]


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")


def arrow_schema(dataset: Dataset) -> pa.Schema:
    """The Arrow schema for `dataset`, labels and code labels included as metadata."""
    fields = []
    for column in dataset.columns:
        meta = {f"label_{locale}": text for locale, text in column.label.items()}
        meta["description"] = column.description
        if column.value_labels:
            meta["value_labels"] = _json({str(k): dict(v) for k, v in column.value_labels.items()}).decode()
        fields.append(
            pa.field(
                column.name,
                arrow_type(column),
                nullable=True,
                metadata={k.encode(): v.encode() for k, v in sorted(meta.items())},
            )
        )
    return pa.schema(fields, metadata={b"qol.dataset": dataset.name.encode(), b"qol.label": _json(dict(dataset.label))})


def checked_batches(dataset: Dataset, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """`dataset`'s Arrow `batches` with `schema` attached, checked as ``dataset.checked_rows`` checks
    rows: the column types (Arrow enforces the rest) and no NaN or infinity, reported with the row
    number."""
    done = 0
    for batch in batches:
        if batch.schema.names != schema.names:
            raise ValueError(f"{dataset.name}: batch columns {batch.schema.names} are not {schema.names}")
        batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
        for column, values in zip(dataset.columns, batch.columns):
            if column.type == "float":
                bad = pc.indices_nonzero(pc.fill_null(pc.invert(pc.is_finite(values)), False))
                if len(bad):
                    row = bad[0].as_py()
                    raise ValueError(
                        f"{dataset.name} row {done + row + 1}: column {column.name!r}: expected a "
                        f"finite float (missing is None, never NaN), got {values[row].as_py()!r}"
                    )
        done += batch.num_rows
        yield batch


PARQUET_PAGE_BYTES = 1 << 20
"""pyarrow's default Parquet data page size and dictionary page size limit (1 MiB)."""


def row_groups(
    batches: Iterable[pa.RecordBatch], size: int, page_bytes: int = PARQUET_PAGE_BYTES
) -> Iterator[pa.Table]:
    """The same rows as tables of exactly `size` rows (the last may be shorter), for
    ``ParquetWriter.write_table``: Parquet row groups then fall where the row writer puts them,
    whatever chunks the builder produced. Nothing is copied that need not be.

    A row group's column that spans two batches is written from its pieces as they are, which writes
    the same bytes as one contiguous array when the column is smaller than a page: the writer
    buffers values and dictionary indices and encodes them when it closes a page, so only a page or
    dictionary filled mid-column depends on where the pieces meet (it checks after each piece). A
    column whose values take ``page_bytes`` or more (a bound on its plain and dictionary encodings)
    is made contiguous first.
    """
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(pending)
            yield _contiguous_if_large(table.slice(0, size), page_bytes)
            rest = table.slice(size)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield _contiguous_if_large(pa.Table.from_batches(pending, schema=pending[0].schema), page_bytes)


def _contiguous_if_large(table: pa.Table, page_bytes: int) -> pa.Table:
    columns = [
        column if column.num_chunks <= 1 or column.nbytes < page_bytes else column.combine_chunks()
        for column in table.columns
    ]
    return pa.Table.from_arrays(columns, schema=table.schema)


@contextlib.contextmanager
def system_allocator() -> Iterator[None]:
    """Arrow's allocations from the system allocator meanwhile (writing a dataset's batches: the
    reading, building and encoding threads). With pyarrow's default, mimalloc, memory allocated in
    one of these threads and freed in another made the kernel's share of an export vary from run
    to run, up to a fifth of its time; with the system's allocator (or jemalloc) it did not.
    Buffers go back to the pool they came from, so switching the default is safe."""
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(before)


def write_behind(
    batches: Iterable[pa.RecordBatch], write: Callable[[Iterator[pa.RecordBatch]], object], depth: int = 2
) -> None:
    """``write(batches)`` in a worker thread while this thread produces the batches (reading the
    database, which belongs to it): checking, encoding and writing (which release the GIL) overlap
    with reading, and this thread waits for them only when ``depth`` batches are queued. An error in
    either thread stops both and is raised here."""
    feed: queue.Queue[Any] = queue.Queue(maxsize=depth)
    produced = iter(batches)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qol-write") as pool:
        writing = pool.submit(write, _queued(feed))
        try:
            for batch in produced:
                if not _put(feed, batch, writing):
                    break
        finally:
            _put(feed, _END, writing)
            if isinstance(produced, Generator):
                produced.close()  # a writer's error stops the reading (and its threads) now
        writing.result()


_END = object()


def _put(feed: queue.Queue[Any], item: object, writing: Future[object]) -> bool:
    """Queue ``item`` unless the writer has stopped (then False)."""
    while not writing.done():
        try:
            feed.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _queued(feed: queue.Queue[Any]) -> Iterator[Any]:
    while (item := feed.get()) is not _END:
        yield item


# ---------------------------------------------------------------- CSV text


def _float_text(value: float) -> str:
    return repr(value)  # what the csv module writes for a float


def _bool_text(value: bool) -> str:
    return "1" if value else "0"


_TEXT: dict[str, Callable[[Any], str]] = {
    "integer": str,
    "float": _float_text,
    "date": date.isoformat,
    "datetime": utc_iso,
    "boolean": _bool_text,
}
"""Cell text of non-string columns, as writers.csv writes them (str / repr / ISO / 'Z' / 1-0)."""


def _quoted(values: pa.Array) -> tuple[pa.Array, bool]:
    """csv.QUOTE_MINIMAL with ',' '"' and CRLF: quote a value holding any of them, doubling '"'.
    Also whether any value was quoted."""
    data = values.buffers()[2]
    text = b"" if data is None else data.to_pybytes()
    if not any(char in text for char in b',"\r\n'):
        return values, False  # the common case, found by scanning the bytes
    special = pc.match_substring_regex(values, '[,"\r\n]')
    if not pc.any(special).as_py():
        return values, False
    wrapped = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(special, wrapped, values), True


def _cell_texts(values: pa.Array, column: Column) -> tuple[pa.Array, bool]:
    """Each cell's CSV text (null for an empty cell), and whether any is quoted; formatting runs once
    per distinct value."""
    if column.type == "string":
        return _quoted(values)
    encoded = pc.dictionary_encode(values)
    text = _TEXT[column.type]
    return pa.array([text(v) for v in encoded.dictionary.to_pylist()], pa.string()).take(encoded.indices), False


def csv_header(dataset: Dataset) -> bytes:
    """The header line (column names need no quoting: see dataset.check_name)."""
    return (",".join(dataset.names) + "\r\n").encode("utf-8")


def csv_lines(batch: pa.RecordBatch, dataset: Dataset) -> pa.Buffer:
    """The batch's rows as CRLF-terminated CSV lines, UTF-8, as writers.csv writes them.

    When no cell needs quotes (the usual case), Arrow's CSV writer joins the cells, told not to
    quote anything: the texts are already what the csv module writes, and integers print as
    ``str`` prints them, so they are passed as they are."""
    cells, raw, quoted = [], [], False
    for values, column in zip(batch.columns, dataset.columns):
        raw.append(column.type == "integer" and pa.types.is_integer(values.type) and len(batch.columns) > 1)
        if raw[-1]:
            cells.append(values)  # printed by Arrow's CSV writer exactly as str() prints them
        else:
            text, needs_quotes = _cell_texts(values, column)
            cells.append(text)
            quoted = quoted or needs_quotes
    if len(cells) > 1 and not quoted:
        import pyarrow.csv as pcsv

        table = pa.Table.from_arrays(cells, names=[str(at) for at in range(len(cells))])
        sink = pa.BufferOutputStream()
        pcsv.write_csv(
            table,
            sink,
            pcsv.WriteOptions(include_header=False, batch_size=max(1, len(table)), eol="\r\n", quoting_style="none"),
        )
        return sink.getvalue()
    texts = [
        _cell_texts(cell, column)[0] if is_raw else cell for cell, column, is_raw in zip(cells, dataset.columns, raw)
    ]
    if len(texts) == 1:  # the csv module quotes a row's only cell when it is empty, so the line is not blank
        texts[0] = pc.if_else(pc.equal(pc.coalesce(texts[0], ""), ""), '""', texts[0])
    lines = pc.binary_join_element_wise(*texts, ",", null_handling="replace", null_replacement="")
    lines = pc.binary_join_element_wise(lines, "", "\r\n")
    _validity, offsets, data = lines.buffers()
    bounds = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offsets], offset=lines.offset)
    return data[bounds[0].as_py() : bounds[-1].as_py()]
