"""SAS transport, version 5 (the XPORT format FDA requires), for every dataset.

Written here with numpy from the SAS technical note TS-140 ("The record layout of a data set in
SAS transport (XPORT) format"): 80-byte header records, one 140-byte NAMESTR per variable, then
fixed-width observations. Version 5 rules, all enforced:
- dataset and variable names of at most 8 characters, upper case: the XPT names of the schema
  (``Column.xpt``, ``Dataset.xpt``: a stable mapping, listed in the data dictionary);
- labels of at most 40 ASCII characters, written for the purpose (``Column.xpt_label``);
- character values of at most 200 bytes, ASCII only (dashes and quotes folded; anything else that
  is not ASCII raises ValueError naming the column: such columns are left out, see
  ``Dataset.xpt_drop``, and the manifest says which);
- numbers as IBM double precision (exact for every IEEE double in IBM's range: 53 bits fit in 56),
  missing as ``.``; dates as SAS dates (DATE9.), instants as SAS datetimes in UTC (DATETIME20.),
  booleans 0/1. XPT has no value labels: codes are in the data dictionary.

The header's creation and modification times are the as-of time (UTC), so bytes are reproducible.
"""

from __future__ import annotations

import datetime as dt
import struct
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qol_app.export.schema import Column, Dataset
from qol_app.export.writers.base import RECORD_BATCH, WriteOptions, Writer, naive_utc

MAX_CHAR_BYTES = 200
_EPOCH = dt.date(1960, 1, 1)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_FOLD = str.maketrans({"–": "-", "—": "-", "’": "'", "‘": "'", "“": '"', "”": '"', "°": "", "×": "x", "…": "..."})


def _header(name: str, numbers: str = "0" * 30) -> bytes:
    return f"HEADER RECORD*******{name:<8}HEADER RECORD!!!!!!!{numbers}  ".encode("ascii")


def _stamp(moment: dt.datetime) -> bytes:
    m = naive_utc(moment)
    return f"{m.day:02d}{_MONTHS[m.month - 1]}{m.year % 100:02d}:{m:%H:%M:%S}".encode("ascii")


def _pad(data: bytes) -> bytes:
    return data + b" " * (-len(data) % 80)


def ibm_doubles(values: np.ndarray) -> np.ndarray:
    """IEEE doubles (NaN = missing) as big-endian IBM double-precision bytes (``S8``)."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    bits = x.view(np.uint64)
    sign = bits & np.uint64(1 << 63)
    exp = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    frac = (bits & np.uint64((1 << 52) - 1)) | np.uint64(1 << 52)
    missing = np.isnan(x)
    zero = (x == 0) & ~missing
    normal = ~missing & ~zero
    shift = (exp - 763) % 4
    ibm_exp = (exp - 763 - shift) // 4
    if np.any(normal & ((ibm_exp < 0) | (ibm_exp > 127) | ~np.isfinite(x))):
        raise ValueError("a number is outside the range of SAS transport (IBM) doubles")
    mantissa = frac << shift.astype(np.uint64)
    out = sign | (np.clip(ibm_exp, 0, 127).astype(np.uint64) << np.uint64(56)) | mantissa
    out = np.where(normal, out, np.uint64(0))
    out = np.where(missing, np.uint64(0x2E << 56), out)
    return out.astype(">u8").view("S8")


def _ascii(values: pa.ChunkedArray, where: str) -> pa.Array:
    """Text as ASCII: dashes, quotes and accents folded; ValueError for anything else."""
    values = pc.fill_null(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values, "")
    if pc.all(pc.string_is_ascii(values)).as_py() is not False:
        return values
    out = []
    for text in values.to_pylist():
        if not text.isascii():
            decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
            text = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
            if not text.isascii():
                raise ValueError(f"{where}: text that is not ASCII cannot go into SAS transport: {text!r}")
        out.append(text)
    return pa.array(out, pa.string())


def _numbers(column: Column, values: pa.ChunkedArray) -> np.ndarray:
    if column.type == "date":
        days = pc.subtract(values.cast(pa.int32()), (_EPOCH - dt.date(1970, 1, 1)).days)
        numbers = days.cast(pa.float64())
    elif column.type == "datetime":
        seconds = values.cast(pa.int64())
        numbers = pc.add(seconds.cast(pa.float64()), float((dt.date(1970, 1, 1) - _EPOCH).days * 86400))
    else:
        numbers = values.cast(pa.float64())
    return pc.fill_null(numbers, float("nan")).to_numpy()


def _chars(values: pa.Array, width: int) -> np.ndarray:
    padded = pc.utf8_rpad(values, width=width, padding=" ")
    offsets = np.frombuffer(padded.buffers()[1], dtype=np.int32)[padded.offset : padded.offset + len(padded) + 1]
    data = padded.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if len(padded) else np.empty(0, np.uint8)
    return raw.view(f"S{width}")


def _widths(dataset: Dataset, columns: tuple[Column, ...]) -> dict[str, int]:
    """Width of each text column: its longest text once folded to ASCII (ValueError past 200 bytes)."""
    stats = dataset.text_stats()
    folded = [c for c in columns if c.type == "string" and not stats[c.name][1]]
    longest = {c.name: stats[c.name][0] for c in columns if c.type == "string"}
    if folded:  # folding shortens texts: measure them folded (and raise for what cannot fold)
        longest.update({c.name: 0 for c in folded})
        for batch in dataset.batches(RECORD_BATCH):
            for column in folded:
                values = _ascii(batch.column(column.name), f"{dataset.name}.{column.name}")
                longest[column.name] = max(longest[column.name], pc.max(pc.binary_length(values)).as_py() or 0)
    for name, width in longest.items():
        if width > MAX_CHAR_BYTES:
            raise ValueError(f"{dataset.name}.{name}: a text exceeds {MAX_CHAR_BYTES} bytes, the XPT v5 limit")
    return {name: max(1, width) for name, width in longest.items()}


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` (its XPT columns) as a SAS transport v5 file to `path`, a batch at a time."""
    columns = dataset.xpt_columns()
    widths = _widths(dataset, columns)
    stamp = _stamp(options.as_of)
    out = bytearray()
    out += _header("LIBRARY")
    out += b"SAS     SAS     SASLIB  9.1     " + b" " * 8 + b" " * 24 + stamp
    out += _pad(stamp)
    out += _header("MEMBER", "000000000000000001600000000140")
    out += _header("DSCRPTR")
    out += b"SAS     " + f"{dataset.xpt:<8}".encode() + b"SASDATA 9.1     " + b" " * 8 + b" " * 24 + stamp
    out += stamp + b" " * 16 + f"{dataset.xpt_label:<40}".encode("ascii") + b" " * 8
    out += _header("NAMESTR", f"000000{len(columns):04d}" + "0" * 20)
    namestrs = bytearray()
    position = 0
    fields = []
    for number, column in enumerate(columns, start=1):
        is_char = column.type == "string"
        length = widths[column.name] if is_char else 8
        form, form_len = {"date": ("DATE", 9), "datetime": ("DATETIME", 20)}.get(column.type, ("", 0))
        namestrs += struct.pack(
            ">hhhh8s40s8shhh2s8shhi52s",
            2 if is_char else 1,
            0,
            length,
            number,
            f"{column.xpt:<8}".encode("ascii"),
            f"{column.xpt_label:<40}".encode("ascii"),
            f"{form:<8}".encode("ascii"),
            form_len,
            0,
            0,
            b"\0\0",
            b" " * 8,
            0,
            0,
            position,
            b"\0" * 52,
        )
        position += length
        fields.append((column, f"S{length}"))
    out += _pad(bytes(namestrs))
    out += _header("OBS")
    record = np.dtype([(f"v{n}", kind) for n, (_c, kind) in enumerate(fields)])
    with path.open("wb") as handle:
        handle.write(out)
        written = 0
        for batch in dataset.batches(RECORD_BATCH):
            rows = np.empty(batch.num_rows, dtype=record)
            for n, (column, _kind) in enumerate(fields):
                values = batch.column(column.name)
                if column.type == "string":
                    text = _ascii(values, f"{dataset.name}.{column.name}")
                    rows[f"v{n}"] = _chars(text, widths[column.name])
                else:
                    rows[f"v{n}"] = ibm_doubles(_numbers(column, values))
            handle.write(rows.data)  # the array's own buffer: no copy as bytes
            written += rows.nbytes
        handle.write(b" " * (-written % 80))


WRITER = Writer(format_id="xpt", extension="xpt", write=write)
