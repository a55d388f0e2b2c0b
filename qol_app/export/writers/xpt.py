"""SAS transport (XPT) via pyreadstat, from a spooled, memory-mapped frame (see _readstat.py).

Version: 5 (the format FDA requires for submissions, readable by every SAS release) when the
schema fits it: dataset and column names of at most 8 characters and English labels of at most
40. Otherwise version 8 (names up to 32 characters, long labels), which SAS reads with
%XPT2LOC or PROC CIMPORT and R with haven. Version 5 cannot hold strings over 200 bytes:
such a value raises ValueError rather than being silently truncated by SAS later.

Encoding: XPT has no encoding marker and SAS sessions are often Latin-1, so labels are always
the English ones whatever the requested locale. String values are written as UTF-8 bytes, which a
SAS session with ENCODING=UTF8 (or pyreadstat/haven) reads back intact; keep submission data ASCII.
XPT has no value labels: codes are described in the data dictionary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from qol_app.export.dataset import Dataset
from qol_app.export.writers._readstat import pin_header_time, spooled_frame
from qol_app.export.writers.base import WriteOptions, Writer

V5_NAME = 8
V5_LABEL = 40
V5_STRING_BYTES = 200


def xpt_version(dataset: Dataset) -> Literal[5, 8]:
    """5 when the schema fits SAS transport version 5, else 8."""
    short = len(dataset.name) <= V5_NAME and all(len(c.name) <= V5_NAME for c in dataset.columns)
    fits = short and len(dataset.label["en"]) <= V5_LABEL
    return 5 if fits and all(len(c.label["en"]) <= V5_LABEL for c in dataset.columns) else 8


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` as SAS transport to `path` (English labels; see module doc)."""
    import pyreadstat

    version = xpt_version(dataset)
    with spooled_frame(dataset, "xpt", "en", path.parent) as frame:
        if version == 5 and frame.max_string_bytes > V5_STRING_BYTES:
            raise ValueError(f"{dataset.name}: a string exceeds {V5_STRING_BYTES} bytes, the XPT v5 limit")
        pyreadstat.write_xport(
            frame.data,
            path,
            file_label=dataset.label["en"][: V5_LABEL if version == 5 else 256],
            column_labels=frame.labels,
            table_name=dataset.name.upper(),
            file_format_version=version,
            variable_format=frame.formats,
        )
    pin_header_time(path, "xpt", options.as_of)


WRITER = Writer(format_id="xpt", extension="xpt", streams=True, write=write)
