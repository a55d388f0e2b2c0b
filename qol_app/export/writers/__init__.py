"""File writers for export datasets: CSV, Excel, Parquet, SAS transport, Stata, SPSS."""

from qol_app.export.writers.base import DEFAULT_AS_OF, WriteOptions, Writer
from qol_app.export.writers.registry import WRITERS, write_dataset

__all__ = ["DEFAULT_AS_OF", "WRITERS", "WriteOptions", "Writer", "write_dataset"]
