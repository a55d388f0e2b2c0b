"""CSV (RFC 4180): UTF-8 without BOM, CRLF, a header of column names; written by Arrow.

No byte-order mark: R (readr), pandas, Stata's `import delimited`, SAS and SPSS read plain UTF-8,
while a BOM sticks to the first column name in several of them. Excel users get the xlsx export.

Cells: missing -> empty (an empty text is ``""``, so the two stay apart); text always quoted;
dates ISO 8601 (2026-03-01); instants ISO 8601 UTC with 'Z'; floats in shortest round-trip form
(full precision: 85.0 is written 85); booleans 1/0 as in Stata/SPSS/SAS. The SAS and R programs in
every zip (export.programs) read these files with the right types, so nothing is guessed.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from qol_app.export.schema import Dataset
from qol_app.export.writers.base import ROW_BATCH, WriteOptions, Writer

ISO_INSTANT = "%Y-%m-%dT%H:%M:%SZ"


def csv_table(dataset: Dataset, table: pa.Table | None = None) -> pa.Table:
    """The rows (``table``, else the dataset's table) with booleans as 1/0 and instants as ISO
    text, as the CSV holds them."""
    table = dataset.table if table is None else table
    for n, column in enumerate(dataset.columns):
        if column.type == "boolean":
            table = table.set_column(n, column.name, table[column.name].cast(pa.int8()))
        elif column.type == "datetime":
            table = table.set_column(n, column.name, pc.strftime(table[column.name], format=ISO_INSTANT))
    return table


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` to `path`, a batch of rows at a time."""
    write_options = pcsv.WriteOptions(eol="\r\n", batch_size=ROW_BATCH)
    schema = csv_table(dataset, dataset.table.slice(0, 0)).schema
    with pcsv.CSVWriter(path, schema, write_options=write_options) as writer:
        for batch in dataset.batches(ROW_BATCH):
            writer.write_table(csv_table(dataset, pa.Table.from_batches([batch])))


WRITER = Writer(format_id="csv", extension="csv", write=write)
