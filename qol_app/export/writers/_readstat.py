"""Shared plumbing for the SAS/Stata/SPSS writers, which all go through pyreadstat (ReadStat).

Memory: pyreadstat writes from a complete DataFrame (ReadStat needs the row count and every
string column's width before the first row). So the rows are first spooled, batch by batch, to an
Arrow IPC file beside the output, and the DataFrame is a zero-copy, memory-mapped view of that
file (Arrow-backed columns). The process's own memory stays flat whatever the number of rows: the
mapped pages are the kernel's page cache, which it reclaims under pressure. Only integer columns
narrowed to 32 bits are copied (4 bytes per row each).

Dates and datetimes are converted here to each package's own numbers (days or seconds since its
epoch) with an explicit display format, rather than through pyreadstat's datetime inference,
which breaks on all-missing columns and Arrow-backed dtypes.

Reproducible bytes: ReadStat stamps the current local time into each file header (XPT: four
fields, SAV: creation date and time, DTA: <timestamp>). `pin_header_time` overwrites them with
the as-of time in UTC after writing, checking the expected layout first so a library change
fails loudly instead of corrupting a file.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from qol_app.export.dataset import Column, Dataset, checked_columns
from qol_app.export.writers.base import naive_utc

if TYPE_CHECKING:
    import pandas as pd

Target = Literal["xpt", "dta", "sav"]

_EPOCH = {"xpt": date(1960, 1, 1), "dta": date(1960, 1, 1), "sav": date(1582, 10, 14)}
_DATE_FORMAT = {"xpt": "DATE9", "dta": "%td", "sav": "DATE11"}
_DATETIME_FORMAT = {"xpt": "DATETIME20", "dta": "%tc", "sav": "DATETIME20"}
_STATA_LONG = (-2_147_483_647, 2_147_483_620)  # Stata reserves the top of int32 for missing codes
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class Frame:
    """A DataFrame ready for pyreadstat plus the per-variable metadata it needs."""

    data: pd.DataFrame
    labels: dict[str, str | None]
    formats: dict[str, str] = field(default_factory=dict)
    max_string_bytes: int = 0


def _date_number(target: Target) -> Callable[[date], float]:
    epoch = _EPOCH[target]
    scale = 86400.0 if target == "sav" else 1.0  # SPSS counts seconds, SAS/Stata days
    return lambda d: (d - epoch).days * scale


def _datetime_number(target: Target) -> Callable[[datetime], float]:
    epoch = datetime.combine(_EPOCH[target], datetime.min.time())
    scale = 1000.0 if target == "dta" else 1.0  # Stata %tc counts milliseconds

    def convert(moment: datetime) -> float:
        delta: timedelta = naive_utc(moment) - epoch
        return (delta.days * 86400 + delta.seconds + delta.microseconds / 1e6) * scale

    return convert


@contextmanager
def spooled_frame(dataset: Dataset, target: Target, locale: str, folder: Path) -> Iterator[Frame]:
    """`dataset` as a typed DataFrame for `target` with labels in `locale` (see the module doc).

    The spool file lives in `folder` (the output's) only while the frame is in use.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with tempfile.TemporaryDirectory(prefix=".spool.", dir=folder) as spool_dir:
        spool = Path(spool_dir) / f"{dataset.name}.arrow"
        frame = Frame(
            data=pd.DataFrame(),
            labels={c.name: c.label_for(locale) for c in dataset.columns},
            formats={
                c.name: (_DATE_FORMAT if c.type == "date" else _DATETIME_FORMAT)[target]
                for c in dataset.columns
                if c.type in ("date", "datetime")
            },
        )
        integers = _spool(dataset, target, frame, spool)
        with pa.memory_map(str(spool)) as source:
            table = ipc.open_file(source).read_all()
            for name, (low, high) in integers.items():
                fits = _STATA_LONG[0] <= low and high <= _STATA_LONG[1]
                index = table.schema.get_field_index(name)
                table = table.set_column(index, name, table[name].cast(pa.int32() if fits else pa.float64()))
            frame.data = table.to_pandas(types_mapper=pd.ArrowDtype)
            del table
            try:
                yield frame
            finally:
                frame.data = pd.DataFrame()  # drop the views before the file is unmapped and removed


def _spool(dataset: Dataset, target: Target, frame: Frame, spool: Path) -> dict[str, tuple[int, int]]:
    """Write the checked rows to `spool` as Arrow record batches; returns integer columns' (min, max)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.ipc as ipc

    types = {"string": pa.string(), "integer": pa.int64(), "boolean": pa.int64()}
    schema = pa.schema([(c.name, types.get(c.type, pa.float64())) for c in dataset.columns])
    converters = {c.name: _converter(c, target) for c in dataset.columns}
    integers = {c.name: (0, 0) for c in dataset.columns if c.type in ("integer", "boolean")}  # 0 fits either way
    with ipc.new_file(str(spool), schema) as sink:
        for _count, batch in checked_columns(dataset):
            arrays = []
            for field_, values in zip(schema, batch):
                array = pa.array(converters[field_.name](values), field_.type)
                if field_.name in integers and array.null_count < len(array):
                    low, high = integers[field_.name]
                    bounds = pc.min_max(array)
                    integers[field_.name] = (min(low, bounds["min"].as_py()), max(high, bounds["max"].as_py()))
                elif field_.type == pa.string() and array.null_count < len(array):
                    longest = pc.max(pc.binary_length(array)).as_py()
                    frame.max_string_bytes = max(frame.max_string_bytes, longest)
                arrays.append(array)
            sink.write_batch(pa.record_batch(arrays, schema=schema))
    return integers


def _converter(column: Column, target: Target) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """How a batch of checked values becomes what the spool stores (dates as the package's numbers)."""
    kind = column.type
    if kind in ("date", "datetime"):
        convert = _date_number(target) if kind == "date" else _datetime_number(target)
        return lambda values: [None if v is None else convert(v) for v in values]
    if kind in ("integer", "boolean"):
        return lambda values: [None if v is None else int(v) for v in values]
    return lambda values: values


def value_labels(dataset: Dataset, locale: str, *, strings: bool) -> dict[str, dict[Any, str]]:
    """pyreadstat's variable_value_labels; string codes only when the format supports them.

    (pyreadstat's annotation says numeric keys only, but it writes string-keyed sets to SPSS.)
    """
    result: dict[str, dict[Any, str]] = {}
    for column in dataset.columns:
        codes = column.codes_for(locale)
        if codes and (strings or column.type != "string"):
            result[column.name] = codes
    return result


def fit_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


# --- header timestamps ---------------------------------------------------------------------


def _stamps(moment: datetime) -> dict[Target, bytes]:
    m = naive_utc(moment)
    mon = _MONTHS[m.month - 1]
    return {
        "xpt": f"{m.day:02d}{mon.upper()}{m.year % 100:02d}:{m:%H:%M:%S}".encode("ascii"),
        "sav": f"{m.day:02d} {mon} {m.year % 100:02d}{m:%H:%M:%S}".encode("ascii"),
        "dta": f"{m.day:02d} {mon} {m.year:04d} {m:%H:%M}".encode("ascii"),
    }


_XPT_STAMP = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")
_SAV_STAMP = re.compile(rb"\d\d [A-Z][a-z]{2} \d\d\d\d:\d\d:\d\d")
_DTA_STAMP = re.compile(rb"<timestamp>\x11(\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d)</timestamp>")
_SAV_STAMP_AT = 92  # after "$FL2", product name, layout, case size, compression, weight, ncases, bias


def pin_header_time(path: Path, target: Target, as_of: datetime) -> None:
    """Overwrite the creation/modification times ReadStat wrote into `path` with `as_of` (UTC)."""
    stamp = _stamps(as_of)[target]
    with path.open("r+b") as handle:
        head = handle.read(1024)
        if target == "xpt":
            spots = [m.start() for m in _XPT_STAMP.finditer(head[:560])]
            if len(spots) != 4:
                raise RuntimeError(f"unexpected XPT header layout in {path.name}")
        elif target == "sav":
            if not _SAV_STAMP.fullmatch(head[_SAV_STAMP_AT : _SAV_STAMP_AT + 17]):
                raise RuntimeError(f"unexpected SAV header layout in {path.name}")
            spots = [_SAV_STAMP_AT]
        else:
            found = _DTA_STAMP.search(head)
            if found is None:
                raise RuntimeError(f"unexpected DTA header layout in {path.name}")
            spots = [found.start(1)]
        for offset in spots:
            handle.seek(offset)
            handle.write(stamp)
