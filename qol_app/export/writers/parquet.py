"""Apache Parquet via pyarrow: typed schema, labels in field metadata, 50k-row row groups.

Types: string -> utf8, integer -> int64, float -> float64, date -> date32,
datetime -> timestamp[us, UTC], boolean -> bool. Each field carries `label_en`, `label_zh_Hans`,
`description` and `value_labels` (JSON) metadata; the schema carries the dataset's labels.
The file holds no timestamps; `created_by` names the pyarrow version, so bytes are reproducible
for a given pyarrow release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from qol_app.export.dataset import Column, Dataset, checked_columns
from qol_app.export.writers.base import ROW_BATCH, WriteOptions, Writer

if TYPE_CHECKING:
    import pyarrow as pa


def _arrow_type(column: Column) -> pa.DataType:
    import pyarrow as pa

    return {
        "string": pa.string(),
        "integer": pa.int64(),
        "float": pa.float64(),
        "date": pa.date32(),
        "datetime": pa.timestamp("us", tz="UTC"),
        "boolean": pa.bool_(),
    }[column.type]


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")


def arrow_schema(dataset: Dataset) -> pa.Schema:
    """The Arrow schema for `dataset`, labels and code labels included as metadata."""
    import pyarrow as pa

    fields = []
    for column in dataset.columns:
        meta = {f"label_{locale}": text for locale, text in column.label.items()}
        meta["description"] = column.description
        if column.value_labels:
            meta["value_labels"] = _json({str(k): dict(v) for k, v in column.value_labels.items()}).decode()
        fields.append(pa.field(column.name, _arrow_type(column), nullable=True,
                               metadata={k.encode(): v.encode() for k, v in sorted(meta.items())}))
    return pa.schema(fields, metadata={b"qol.dataset": dataset.name.encode(),
                                       b"qol.label": _json(dict(dataset.label))})


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Stream `dataset` to `path`, one row group per ROW_BATCH rows; memory is bounded by a batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(dataset)
    with pq.ParquetWriter(path, schema, compression="snappy") as out:
        for _count, columns in checked_columns(dataset, ROW_BATCH):
            arrays = [pa.array(values, type=fld.type) for values, fld in zip(columns, schema)]
            out.write_batch(pa.record_batch(arrays, schema=schema), row_group_size=ROW_BATCH)


WRITER = Writer(format_id="parquet", extension="parquet", streams=True, write=write)
