"""SPSS .sav (UTF-8) via pyreadstat, with variable labels, value labels and missing values.

Written from a spooled, memory-mapped frame (see _readstat.py). Labels are in the requested locale; value labels
go on integer, boolean and string variables. Missing: numeric None is system-missing; SPSS has no
missing state for strings, so the empty string is declared user-missing on every string variable
(None and "" are therefore the same, as in CSV). Measurement level: nominal for labelled and
string variables, scale for the rest. The 64-byte file label is cut at a character boundary.
"""

from __future__ import annotations

from pathlib import Path

from qol_app.export.dataset import Dataset
from qol_app.export.writers._readstat import fit_bytes, pin_header_time, spooled_frame, value_labels
from qol_app.export.writers.base import WriteOptions, Writer

SAV_FILE_LABEL_BYTES = 64


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` as an SPSS system file to `path`."""
    import pyreadstat

    labels = value_labels(dataset, options.locale, strings=True)
    strings = [c.name for c in dataset.columns if c.type == "string"]
    measure = {c.name: "nominal" if c.name in labels or c.type == "string" else "scale" for c in dataset.columns}
    with spooled_frame(dataset, "sav", options.locale, path.parent) as frame:
        pyreadstat.write_sav(
            frame.data,
            path,
            file_label=fit_bytes(dataset.label[options.locale], SAV_FILE_LABEL_BYTES),
            column_labels=frame.labels,
            variable_value_labels=labels,
            missing_ranges={name: [""] for name in strings},
            variable_measure=measure,
            variable_format=frame.formats,
        )
    pin_header_time(path, "sav", options.as_of)


WRITER = Writer(format_id="sav", extension="sav", streams=True, write=write)
