"""The export formats, keyed by a stable format id, and the one entry point that writes a file."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from qol_app.export.schema import Dataset, Locale
from qol_app.export.writers import csv, dta, parquet, sav, xlsx, xpt
from qol_app.export.writers.base import DEFAULT_AS_OF, WriteOptions, Writer

WRITERS: dict[str, Writer] = {module.WRITER.format_id: module.WRITER for module in (csv, xlsx, parquet, xpt, dta, sav)}


def write_dataset(
    fmt: str, dataset: Dataset, out_dir: Path, *, locale: Locale = "en", as_of: datetime | None = None
) -> Path:
    """Write `dataset` as `out_dir/<dataset.name>.<ext>` in format `fmt` and return that path.

    The file appears only when complete (written to a temporary name in `out_dir`, then renamed),
    so a failed export never leaves a truncated file behind. `as_of` (timezone-aware) is the time
    stamped into file metadata; the same data, locale and as_of give byte-identical files. Raises
    KeyError for an unknown format, ValueError for data the format cannot hold.
    """
    try:
        writer = WRITERS[fmt]
    except KeyError:
        raise KeyError(f"unknown export format {fmt!r}; known: {sorted(WRITERS)}") from None
    options = WriteOptions(locale=locale, as_of=as_of or DEFAULT_AS_OF)
    out_dir = Path(out_dir)
    target = out_dir / f"{dataset.name}.{writer.extension}"
    handle, temp_name = tempfile.mkstemp(prefix=f".{dataset.name}.", suffix=f".{writer.extension}", dir=out_dir)
    os.close(handle)
    temp = Path(temp_name)
    try:
        writer.write(dataset, temp, options)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target
