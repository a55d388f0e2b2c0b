"""Stata .dta (format 118, Stata 14 and later: UTF-8 labels and values) via pyreadstat.

Written from a spooled, memory-mapped frame (see _readstat.py). Variable labels and the dataset label are in the
requested locale. Value labels go on integer and boolean variables; Stata cannot label string
variables, so string codes keep their self-describing values and are explained in the data
dictionary. Missing values are Stata's system missing (.) and empty strings. Datetimes are %tc
(milliseconds since 1960, UTC; sub-millisecond precision is lost), dates %td.
"""

from __future__ import annotations

from pathlib import Path

from qol_app.export.dataset import Dataset
from qol_app.export.writers._readstat import pin_header_time, spooled_frame, value_labels
from qol_app.export.writers.base import WriteOptions, Writer

STATA_VERSION = 14  # pyreadstat's name for file format 118


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` as a Stata 14+ file to `path`."""
    import pyreadstat

    with spooled_frame(dataset, "dta", options.locale, path.parent) as frame:
        pyreadstat.write_dta(
            frame.data,
            path,
            file_label=dataset.label[options.locale],
            column_labels=frame.labels,
            version=STATA_VERSION,
            variable_value_labels=value_labels(dataset, options.locale, strings=False),
            variable_format=frame.formats,
        )
    pin_header_time(path, "dta", options.as_of)


WRITER = Writer(format_id="dta", extension="dta", streams=True, write=write)
