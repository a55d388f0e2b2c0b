"""SPSS .sav (UTF-8) via pyreadstat, with variable labels, value labels and missing values.

Labels are in the requested locale; value labels go on coded text, integer and boolean variables.
Missing: numeric None is system-missing; SPSS has no missing state for text, so the empty text is
declared user-missing on every text variable (None and "" are the same, as in CSV). Measurement
level: nominal for labelled and text variables, scale for the rest. Dates and instants are SPSS
dates (seconds since 1582-10-14; DATE11, DATETIME20, UTC). The 64-byte file label is cut at a
character boundary. ReadStat stamps the current time into the header: it is overwritten with the
as-of time (UTC), so bytes are reproducible.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from qol_app.export.schema import Dataset
from qol_app.export.writers._frame import empty_frame, number_column, text_column
from qol_app.export.writers.base import WriteOptions, Writer, naive_utc

SAV_FILE_LABEL_BYTES = 64
_EPOCH_SECONDS = (dt.date(1970, 1, 1) - dt.date(1582, 10, 14)).days * 86400.0
_STAMP = re.compile(rb"\d\d [A-Z][a-z]{2} \d\d\d\d:\d\d:\d\d")
_STAMP_AT = 92  # after "$FL2", product name, layout, case size, compression, weight, ncases, bias
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def fit_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` as an SPSS system file to `path`."""
    import pyreadstat

    frame = empty_frame(dataset)
    formats: dict[str, str] = {}
    labels = {}
    for column in dataset.columns:
        values = dataset.table[column.name]
        if column.type == "string":
            frame[column.name] = text_column(values)
        elif column.type in ("date", "datetime"):
            seconds = values.cast(pa.timestamp("s")).cast(pa.int64()).cast(pa.float64())
            frame[column.name] = number_column(pc.add(seconds, _EPOCH_SECONDS))
            formats[column.name] = "DATE11" if column.type == "date" else "DATETIME20"
        else:
            frame[column.name] = number_column(values)
        codes = column.codes_for(options.locale)
        if codes:
            labels[column.name] = {(float(k) if column.type != "string" else k): v for k, v in codes.items()}
    strings = [c.name for c in dataset.columns if c.type == "string"]
    pyreadstat.write_sav(
        frame,
        path,
        file_label=fit_bytes(dataset.label[options.locale], SAV_FILE_LABEL_BYTES),
        column_labels={c.name: c.label_for(options.locale) for c in dataset.columns},
        variable_value_labels=labels,
        missing_ranges={name: [""] for name in strings},
        variable_measure={
            c.name: "nominal" if c.name in labels or c.type == "string" else "scale" for c in dataset.columns
        },
        variable_format=formats,
    )
    m = naive_utc(options.as_of)
    stamp = f"{m.day:02d} {_MONTHS[m.month - 1]} {m.year % 100:02d}{m:%H:%M:%S}".encode("ascii")
    with path.open("r+b") as handle:
        head = handle.read(_STAMP_AT + 17)
        if not _STAMP.fullmatch(head[_STAMP_AT : _STAMP_AT + 17]):
            raise RuntimeError(f"unexpected SAV header layout in {path.name}")
        handle.seek(_STAMP_AT)
        handle.write(stamp)


WRITER = Writer(format_id="sav", extension="sav", write=write)
