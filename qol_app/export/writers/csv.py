"""CSV (RFC 4180): UTF-8 without BOM, CRLF, header of column names, streamed row by row.

No byte-order mark: R (readr), pandas, Stata's `import delimited`, SAS and SPSS read plain UTF-8,
while a BOM sticks to the first column name in several of them. Excel users get the xlsx export,
which also keeps Chinese text and guards against formula injection.

Cells: None -> empty; dates ISO 8601 (2026-03-01); datetimes ISO 8601 UTC with 'Z';
floats in shortest round-trip form (full precision); booleans 1/0 as in Stata/SPSS/SAS.
Datasets with Arrow batches are written from them, to the same bytes (writers/arrow.py).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from qol_app.export.dataset import Column, Dataset, checked_columns
from qol_app.export.writers.base import WriteOptions, Writer, utc_iso


def _encoder(column: Column) -> Callable[[Any], str] | None:
    """How to turn a cell into text; None where the csv module already writes it as wanted
    (None -> empty, str as is, int/float via repr, date via isoformat)."""
    kind = column.type
    if kind == "datetime":
        return lambda v: "" if v is None else utc_iso(v)
    if kind == "boolean":
        return lambda v: "" if v is None else ("1" if v else "0")
    return None


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Stream `dataset` to `path`; memory does not depend on the number of rows."""
    if dataset.batches is not None:
        _write_batches(dataset, dataset.batches, path)
        return
    encoders = [_encoder(c) for c in dataset.columns]
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        out.writerow(dataset.names)
        for _count, columns in checked_columns(dataset):
            out.writerows(
                zip(
                    *(
                        values if encode is None else list(map(encode, values))
                        for encode, values in zip(encoders, columns)
                    )
                )
            )


def _write_batches(dataset: Dataset, batches: Iterable[Any], path: Path) -> None:
    from qol_app.export.writers.arrow import (
        arrow_schema,
        checked_batches,
        csv_header,
        csv_lines,
        system_allocator,
        write_behind,
    )

    schema = arrow_schema(dataset)
    with system_allocator(), path.open("wb") as handle:
        handle.write(csv_header(dataset))

        def write_lines(queued: Iterator[Any]) -> None:
            for batch in checked_batches(dataset, schema, queued):
                handle.write(csv_lines(batch, dataset))

        write_behind(batches, write_lines)


WRITER = Writer(format_id="csv", extension="csv", streams=True, write=write)
