"""Stata 14+ (.dta, format 118, UTF-8), with variable, dataset and value labels.

Written here with numpy from Stata's published file format description (``help dta``): a header,
a map of section offsets, variable types, names, sort list, formats, value-label names, variable
labels, characteristics, the fixed-width observations and the value-label tables. pandas'
``to_stata`` held a whole converted copy of a large trial's long file in memory (three quarters of
a gigabyte); this writes a block of rows at a time.

Every coded variable carries value labels: coded text (arm, status, missing_reason, respondent,
mode, scale, ...) is stored as integers 1, 2, ... in the order of the code list, labelled in the
requested language (the data dictionary's ``numeric_code`` column maps them back to the codes);
booleans are 0/1 labelled No/Yes. Other text stays text (str1-str2045, "" when missing); numbers
are doubles with Stata's system missing (.); dates are %td, instants %tc (UTC, milliseconds).
The file's time stamp is the as-of time, so bytes are reproducible.
"""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qol_app.export.schema import Column, Dataset, numeric_codes
from qol_app.export.writers.base import RECORD_BATCH, WriteOptions, Writer, naive_utc

STATA_LABEL = 80
MAX_STR = 2045
DOUBLE = 65526
MISSING = struct.unpack("<d", bytes.fromhex("000000000000e07f"))[0]  # Stata's "."
_EPOCH_DAYS = (dt.date(1970, 1, 1) - dt.date(1960, 1, 1)).days
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _fixed(text: str, size: int) -> bytes:
    data = text.encode("utf-8")[:size].decode("utf-8", "ignore").encode("utf-8")
    return data + b"\0" * (size - len(data))


def _tag(name: str, content: bytes) -> bytes:
    return f"<{name}>".encode() + content + f"</{name}>".encode()


def _texts(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pc.fill_null(values, "")


def _nul_padded(values: pa.Array, size: int) -> np.ndarray:
    """Texts (null-free, each at most ``size`` bytes) as ``size``-byte NUL-padded fields."""
    if len(values) and pc.all(pc.string_is_ascii(values)).as_py():  # one byte per character: Arrow pads
        padded = pc.utf8_rpad(values, width=size, padding="\0")
        offsets = np.frombuffer(padded.buffers()[1], dtype=np.int32)[padded.offset : padded.offset + len(padded) + 1]
        return np.frombuffer(padded.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].view(f"S{size}")
    out = np.zeros((len(values), size), dtype=np.uint8)
    if len(values):
        offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + len(values) + 1]
        lengths = np.diff(offsets)
        data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        rows = np.repeat(np.arange(len(values)), lengths)
        starts = np.repeat(offsets[:-1] - offsets[0], lengths)
        out[rows, np.arange(len(data)) - starts] = data
    return out.view(f"S{size}").reshape(len(values))


def _numbers(column: Column, values: pa.Array, codes: dict | None) -> np.ndarray:
    if codes is not None:
        positions = pc.index_in(values, value_set=pa.array(list(codes), pa.string()))
        unknown = pc.and_(pc.is_null(positions), pc.is_valid(values))
        if pc.any(unknown).as_py():
            raise ValueError(f"{column.name}: value {values.filter(unknown)[0].as_py()!r} is not in its code list")
        numbers = pc.add(positions, 1).cast(pa.float64())
    elif column.type == "date":
        numbers = pc.add(values.cast(pa.int32()), _EPOCH_DAYS).cast(pa.float64())
    elif column.type == "datetime":
        numbers = pc.multiply(pc.add(values.cast(pa.int64()), _EPOCH_DAYS * 86400).cast(pa.float64()), 1000.0)
    else:
        numbers = values.cast(pa.float64())
    return pc.fill_null(numbers, MISSING).to_numpy(zero_copy_only=False).astype("<f8")


def _label_table(name: str, labels: dict[int, str]) -> bytes:
    texts = [label.encode("utf-8")[:32000] + b"\0" for label in labels.values()]
    offsets, at = [], 0
    for text in texts:
        offsets.append(at)
        at += len(text)
    table = struct.pack("<ii", len(texts), at) + struct.pack(f"<{len(texts)}i", *offsets)
    table += struct.pack(f"<{len(texts)}i", *labels) + b"".join(texts)
    return _tag("lbl", struct.pack("<i", len(table)) + _fixed(name, 129) + b"\0\0\0" + table)


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` as a Stata 118 file to `path`."""
    locale = options.locale
    stats = dataset.text_stats()
    types, formats, label_names, tables = [], [], [], []
    kinds: list[tuple[Column, int, dict | None]] = []
    for column in dataset.columns:
        codes = numeric_codes(column)
        if column.type == "string" and codes is None:
            width = max(1, stats[column.name][0])
            if width > MAX_STR:
                raise ValueError(f"{dataset.name}.{column.name}: a text exceeds {MAX_STR} bytes (Stata str limit)")
            types.append(width)
            formats.append(f"%-{min(width, 244)}s")
            kinds.append((column, width, None))
            label_names.append("")
            continue
        types.append(DOUBLE)
        formats.append({"date": "%td", "datetime": "%tc"}.get(column.type, "%10.0g"))
        kinds.append((column, 0, codes))
        labels = column.codes_for(locale)
        if labels:
            name = column.name[:32]
            numbered = {codes[k]: v for k, v in labels.items()} if codes else {int(k): v for k, v in labels.items()}
            label_names.append(name)
            tables.append(_label_table(name, numbered))
        else:
            label_names.append("")
    m = naive_utc(options.as_of)
    stamp = f"{m.day:02d} {_MONTHS[m.month - 1]} {m.year:04d} {m:%H:%M}".encode()
    label = dataset.label[locale][:STATA_LABEL].encode("utf-8")
    k, n = len(dataset.columns), dataset.num_rows
    header = _tag(
        "header",
        _tag("release", b"118")
        + _tag("byteorder", b"LSF")
        + _tag("K", struct.pack("<H", k))
        + _tag("N", struct.pack("<Q", n))
        + _tag("label", struct.pack("<H", len(label)) + label)
        + _tag("timestamp", bytes([len(stamp)]) + stamp),
    )
    sections = [
        ("variable_types", struct.pack(f"<{k}H", *types)),
        ("varnames", b"".join(_fixed(c.name, 129) for c in dataset.columns)),
        ("sortlist", b"\0\0" * (k + 1)),
        ("formats", b"".join(_fixed(f, 57) for f in formats)),
        ("value_label_names", b"".join(_fixed(name, 129) for name in label_names)),
        ("variable_labels", b"".join(_fixed(c.label_for(locale), 321) for c in dataset.columns)),
        ("characteristics", b""),
    ]
    opening = b"<stata_dta>" + header
    map_size = len(_tag("map", b"\0" * 8 * 14))
    offsets = [0, len(opening)]
    body = bytearray()
    position = len(opening) + map_size
    for name, content in sections:
        offsets.append(position + len(body))
        body += _tag(name, content)
    record = np.dtype([(f"v{i}", f"S{w}" if w else "<f8") for i, (_c, w, _codes) in enumerate(kinds)])
    data_at = position + len(body)
    data_size = len(b"<data>") + record.itemsize * n + len(b"</data>")
    strls_at = data_at + data_size
    value_labels = _tag("value_labels", b"".join(tables))
    labels_at = strls_at + len(_tag("strls", b""))
    end_at = labels_at + len(value_labels)
    offsets += [data_at, strls_at, labels_at, end_at, end_at + len(b"</stata_dta>")]
    with path.open("wb") as handle:
        handle.write(opening + _tag("map", struct.pack("<14Q", *offsets)) + bytes(body) + b"<data>")
        for batch in dataset.batches(RECORD_BATCH):
            rows = np.zeros(batch.num_rows, dtype=record)
            for i, (column, width, codes) in enumerate(kinds):
                values = batch.column(column.name)
                if width:
                    rows[f"v{i}"] = _nul_padded(_texts(values), width)
                else:
                    rows[f"v{i}"] = _numbers(column, values, codes)
            handle.write(rows.data)  # the array's own buffer: no copy as bytes
        handle.write(b"</data>" + _tag("strls", b"") + value_labels + b"</stata_dta>")


WRITER = Writer(format_id="dta", extension="dta", write=write)
