"""Apache Parquet via pyarrow: typed schema, labels in field metadata, 50k-row row groups.

Types: string -> utf8, integer -> int64, float -> float64, date -> date32, boolean -> bool,
datetime -> timestamp[ms, UTC] (Parquet has no seconds unit; the values are whole seconds).
Each field carries `label_en`, `label_zh_Hans`, `description`, `xpt_name` and `value_labels`
(JSON) metadata; the schema carries the dataset's labels. The file holds no timestamps;
`created_by` names the pyarrow version, so bytes are reproducible for a given pyarrow release.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from qol_app.export.schema import Dataset, dataset_metadata
from qol_app.export.writers.base import ROW_BATCH, WriteOptions, Writer


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` to `path`, one row group per ROW_BATCH rows, a row group at a time."""
    schema = dataset_metadata(dataset)
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        if not dataset.num_rows:
            writer.write_table(pa.Table.from_arrays(dataset.table.columns, schema=schema), row_group_size=ROW_BATCH)
        for batch in dataset.batches(ROW_BATCH):
            writer.write_table(pa.Table.from_arrays(batch.columns, schema=schema), row_group_size=ROW_BATCH)


WRITER = Writer(format_id="parquet", extension="parquet", write=write)
