"""Apache Parquet via pyarrow: typed schema, labels in field metadata, 50k-row row groups.

Types: string -> utf8, integer -> int64, float -> float64, date -> date32,
datetime -> timestamp[us, UTC], boolean -> bool. Each field carries `label_en`, `label_zh_Hans`,
`description` and `value_labels` (JSON) metadata; the schema carries the dataset's labels
(see writers/arrow.py). The file holds no timestamps; `created_by` names the pyarrow version, so
bytes are reproducible for a given pyarrow release. Datasets with Arrow batches are written as
they are, in the same row groups as rows would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from qol_app.export.dataset import Dataset, checked_columns
from qol_app.export.writers.base import ROW_BATCH, WriteOptions, Writer

if TYPE_CHECKING:
    import pyarrow as pa


def _row_batches(dataset: Dataset, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    for _count, columns in checked_columns(dataset, ROW_BATCH):
        arrays = [pa.array(values, type=fld.type) for values, fld in zip(columns, schema)]
        yield pa.record_batch(arrays, schema=schema)


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Stream `dataset` to `path`, one row group per ROW_BATCH rows; memory is bounded by a batch."""
    import pyarrow.parquet as pq

    from qol_app.export.writers.arrow import (
        arrow_schema,
        checked_batches,
        row_groups,
        system_allocator,
        write_behind,
    )

    schema = arrow_schema(dataset)
    if dataset.batches is None:
        with pq.ParquetWriter(path, schema, compression="snappy") as out:
            for batch in _row_batches(dataset, schema):
                out.write_batch(batch, row_group_size=ROW_BATCH)
        return

    with system_allocator(), pq.ParquetWriter(path, schema, compression="snappy") as out:

        def write_groups(queued: Iterator[pa.RecordBatch]) -> None:
            for table in row_groups(checked_batches(dataset, schema, queued), ROW_BATCH):
                out.write_table(table, row_group_size=ROW_BATCH)

        write_behind(dataset.batches, write_groups)


WRITER = Writer(format_id="parquet", extension="parquet", streams=True, write=write)
