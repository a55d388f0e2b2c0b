"""Analysis-ready exports: dataset descriptions, format writers, manifests, FHIR and SDTM QS.

Pure over Python values (no Flask, no database, no clock): services query, then hand rows here.
Two modules sit on top: ``builders`` (datasets streamed from the database as of a point in time;
only ``builders.source`` touches it) and ``run`` (one export: files, manifest, zip, audit).
Heavy libraries (pandas, pyarrow, openpyxl, pyreadstat) load only when a writer runs.
"""

from qol_app.export.dataset import (
    LOCALES,
    LONG_SCORED_COLUMNS,
    Column,
    ColumnType,
    Dataset,
    checked_rows,
    data_dictionary,
    long_scored_dataset,
)
from qol_app.export.manifest import build_manifest, sha256_file, write_zip
from qol_app.export.writers import WRITERS, WriteOptions, Writer, write_dataset

__all__ = [
    "LOCALES",
    "LONG_SCORED_COLUMNS",
    "WRITERS",
    "Column",
    "ColumnType",
    "Dataset",
    "WriteOptions",
    "Writer",
    "build_manifest",
    "checked_rows",
    "data_dictionary",
    "long_scored_dataset",
    "sha256_file",
    "write_dataset",
    "write_zip",
]
