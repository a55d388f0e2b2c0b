"""Stata 14+ (.dta, format 118, UTF-8) via pandas, with variable, dataset and value labels.

Every coded variable carries value labels: coded text (arm, status, missing_reason, respondent,
mode, scale, ...) is stored as integers 1, 2, ... in the order of the code list, labelled in the
requested language (the data dictionary's ``numeric_code`` column maps them back to the codes);
booleans are 0/1 labelled No/Yes. Other text stays text ("" when missing); numbers are doubles
with Stata's system missing (.); dates are %td, instants %tc (UTC). The file's time stamp is the
as-of time, so bytes are reproducible.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from qol_app.export.schema import Dataset, numeric_codes
from qol_app.export.writers._frame import empty_frame, number_column, text_column
from qol_app.export.writers.base import WriteOptions, Writer, naive_utc

STATA_LABEL = 80


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` as a Stata 118 file to `path`."""
    import pandas as pd

    frame = empty_frame(dataset)
    value_labels: dict[str, dict[float, str]] = {}
    dates: dict[str, str] = {}
    for column in dataset.columns:
        values = dataset.table[column.name]
        codes = numeric_codes(column)
        if codes is not None:
            lookup = pa.array(list(codes), pa.string())
            positions = pa.compute.index_in(values, value_set=lookup)
            unknown = pa.compute.and_(pa.compute.is_null(positions), pa.compute.is_valid(values))
            if pa.compute.any(unknown).as_py():
                bad = values.filter(unknown)[0].as_py()
                raise ValueError(f"{dataset.name}.{column.name}: value {bad!r} is not in its code list")
            frame[column.name] = number_column(pa.compute.add(positions, 1))
            labels = column.codes_for(options.locale) or {}
            value_labels[column.name] = {float(n): labels[code] for code, n in codes.items()}
        elif column.type == "string":
            frame[column.name] = text_column(values)
        elif column.type in ("date", "datetime"):
            moments = values.cast(pa.timestamp("s"))
            frame[column.name] = pd.Series(moments.to_numpy(zero_copy_only=False), dtype="datetime64[s]")
            dates[column.name] = "td" if column.type == "date" else "tc"
        else:
            frame[column.name] = number_column(values)
            labels = column.codes_for(options.locale)
            if labels:
                value_labels[column.name] = {float(code): text for code, text in labels.items()}
    frame.to_stata(
        path,
        write_index=False,
        version=118,
        convert_dates=dates,
        data_label=dataset.label[options.locale][:STATA_LABEL],
        variable_labels={c.name: c.label_for(options.locale) for c in dataset.columns},
        time_stamp=naive_utc(options.as_of),
        value_labels=value_labels,
    )


WRITER = Writer(format_id="dta", extension="dta", write=write)
