"""SPSS system file (.sav, UTF-8, uncompressed), with variable labels, value labels, missing
values and measurement levels.

Written here with numpy, record by record as the format is documented (GNU PSPP's "System File
Format"): a file header, one variable record per 8-byte segment, value labels (records 3 and 4
for numbers, extension record 21 for text), the extension records for machine information (3, 4),
display (11), long names (13), very long strings (14), the encoding (20) and text missing values
(22), then the cases. pyreadstat (ReadStat) wrote files cell by cell in Python, which took minutes
and gigabytes for a large trial's long file; this writes a column at a time.

Labels are in the requested locale; value labels go on coded text, integer and boolean variables.
Missing: numeric None is system-missing; SPSS has no missing state for text, so the empty text is
declared user-missing on every text variable (None and "" are the same, as in CSV). Measurement
level: nominal for labelled and text variables, scale for the rest. Dates and instants are SPSS
dates (seconds since 1582-10-14; DATE11, DATETIME20, UTC). Text longer than 255 bytes is split
into segments as SPSS does. The header's creation time is the as-of time (UTC), so
bytes are reproducible. Names: the variable's name (long-name record) and its XPT name as the
8-character short name.
"""

from __future__ import annotations

import datetime as dt
import struct
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qol_app.export.schema import Column, Dataset
from qol_app.export.writers.base import RECORD_BATCH, WriteOptions, Writer, naive_utc

SAV_FILE_LABEL_BYTES = 64
SYSMIS = -sys.float_info.max
_EPOCH_SECONDS = (dt.date(1970, 1, 1) - dt.date(1582, 10, 14)).days * 86400.0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FORMATS = {"date": (20, 11, 0), "datetime": (22, 20, 0), "float": (5, 18, 6), "integer": (5, 11, 0)}


def fit_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _i(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


def _padded(data: bytes, size: int) -> bytes:
    return data + b" " * (size - len(data))


def _segments(width: int) -> list[int]:
    """Widths of the variables SPSS stores a text of ``width`` bytes in (one unless over 255)."""
    if width <= 255:
        return [width]
    count = -(-width // 252)
    return [255] * (count - 1) + [width - 252 * (count - 1)]


def _storage(width: int) -> int:
    return -(-width // 8) * 8


class _Var:
    def __init__(self, column: Column, width: int, short: str) -> None:
        self.column = column
        self.width = width  # 0 for numbers
        self.short = short
        self.segments = _segments(width) if width else [0]


def _text(values: pa.ChunkedArray) -> pa.Array:
    return pc.fill_null(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values, "")


def _numbers(column: Column, values: pa.Array) -> np.ndarray:
    if column.type in ("date", "datetime"):
        seconds = values.cast(pa.timestamp("s")).cast(pa.int64()).cast(pa.float64())
        values = pc.add(seconds, _EPOCH_SECONDS)
    numbers = values.cast(pa.float64())
    return pc.fill_null(numbers, SYSMIS).to_numpy(zero_copy_only=False).astype("<f8")


def _fixed(values: pa.Array, size: int) -> np.ndarray:
    """Texts as ``size``-byte fields padded with spaces (each at most ``size`` bytes)."""
    if not len(values):
        return np.empty(0, f"S{size}")
    if not pc.all(pc.string_is_ascii(values)).as_py():  # utf8_rpad counts characters, not bytes
        raw = b"".join(_padded(v.encode(), size) for v in values.to_pylist())
        return np.frombuffer(raw, dtype=f"S{size}")
    padded = pc.utf8_rpad(values, width=size, padding=" ")
    offsets = np.frombuffer(padded.buffers()[1], dtype=np.int32)[padded.offset : padded.offset + len(padded) + 1]
    return np.frombuffer(padded.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].view(f"S{size}")


def _segment(values: pa.Array, start: int, size: int) -> np.ndarray:
    """Bytes ``start:start + 255`` of each UTF-8 text (one segment of a very long text; readers
    join the segments' bytes), padded to ``size``."""
    raw = b"".join(_padded(v.encode()[start : start + 255], size) for v in values.to_pylist())
    return np.frombuffer(raw, dtype=f"S{size}") if raw else np.empty(0, f"S{size}")


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` as an SPSS system file to `path`."""
    variables: list[_Var] = []
    stats = dataset.text_stats()
    for column in dataset.columns:
        if column.type == "string":
            variables.append(_Var(column, max(9, stats[column.name][0]), column.xpt or column.name.upper()))
        else:
            variables.append(_Var(column, 0, column.xpt or column.name.upper()))
    shorts = {v.short for v in variables}
    extra = 0

    def segment_name() -> str:
        nonlocal extra
        while True:
            extra += 1
            name = f"SEG{extra:05d}"
            if name not in shorts:
                shorts.add(name)
                return name

    records = bytearray()
    index = 0  # 1-based position of each variable record, continuation records counted
    positions: dict[str, int] = {}
    display: list[int] = []
    long_names: list[str] = []
    very_long: list[str] = []
    numeric_labels: list[tuple[int, dict[float, str]]] = []
    text_labels: list[tuple[_Var, dict[str, str]]] = []
    for var in variables:
        column = var.column
        label = fit_bytes(column.label_for(options.locale), 255).encode()
        codes = column.codes_for(options.locale)
        labelled = bool(codes)
        for n, width in enumerate(var.segments):
            short = var.short if n == 0 else segment_name()
            if var.width:
                spss_type, fmt = width, (1 << 16) | (width << 8)
            else:
                kind, w, d = _FORMATS.get(column.type, (5, 8, 0))
                spss_type, fmt = 0, (kind << 16) | (w << 8) | d
            has_label = n == 0
            records += _i(2, spss_type, int(has_label), 0, fmt, fmt) + _padded(short.encode(), 8)
            if has_label:
                records += _i(len(label)) + label + b"\0" * (-len(label) % 4)
            index += 1
            if n == 0:
                positions[column.name] = index
            for _ in range(_storage(width) // 8 - 1 if width else 0):
                records += _i(2, -1, 0, 0, 0, 0) + b" " * 8
                index += 1
            measure = 1 if (labelled or var.width) else 3
            display += [measure, max(1, min(width or 8, 80)), 0 if var.width else 1]
            if n == 0:
                long_names.append(f"{short}={column.name}")
        if var.width > 255:
            very_long.append(f"{var.short}={var.width:05d}\0\t")
        if codes:
            if var.width:
                text_labels.append((var, {str(k): v for k, v in codes.items()}))
            else:
                numeric_labels.append((positions[column.name], {float(k): v for k, v in codes.items()}))
    case_size = index
    m = naive_utc(options.as_of)
    header = (
        b"$FL2"
        + _padded(b"@(#) SPSS DATA FILE qol_app", 60)
        + _i(2, case_size, 0, 0, dataset.num_rows)
        + struct.pack("<d", 100.0)
        + f"{m.day:02d} {_MONTHS[m.month - 1]} {m.year % 100:02d}".encode()
        + f"{m:%H:%M:%S}".encode()
        + _padded(fit_bytes(dataset.label[options.locale], SAV_FILE_LABEL_BYTES).encode(), 64)
        + b"\0\0\0"
    )
    out = bytearray(header) + records
    for position, labels in numeric_labels:
        out += _i(3, len(labels))
        for value, text in labels.items():
            encoded = fit_bytes(text, 120).encode()
            entry = bytes([len(encoded)]) + encoded
            out += struct.pack("<d", value) + entry + b" " * (-len(entry) % 8)
        out += _i(4, 1, position)

    def extension(subtype: int, size: int, data: bytes) -> bytes:
        return _i(7, subtype, size, len(data) // size) + data

    out += extension(3, 4, _i(1, 0, 0, -1, 1, 1, 2, 65001))
    out += extension(4, 8, struct.pack("<3d", SYSMIS, sys.float_info.max, -sys.float_info.max))
    out += extension(11, 4, _i(*display))
    out += extension(13, 1, "\t".join(long_names).encode())
    if very_long:
        out += extension(14, 1, "".join(very_long).encode())
    out += extension(20, 1, b"UTF-8")
    if text_labels:
        data = bytearray()
        for var, text_codes in text_labels:
            name = var.column.name.encode()
            data += _i(len(name)) + name + _i(var.width, len(text_codes))
            for code, text in text_codes.items():
                encoded = fit_bytes(text, 120).encode()
                data += _i(var.width) + _padded(code.encode(), var.width) + _i(len(encoded)) + encoded
        out += extension(21, 1, bytes(data))
    missing = bytearray()
    for var in variables:
        if var.width:
            name = var.column.name.encode()
            missing += _i(len(name)) + name + bytes([1]) + _i(8) + b" " * 8
    if missing:
        out += extension(22, 1, bytes(missing))
    out += _i(999, 0)

    fields = []
    for var in variables:
        if not var.width:
            fields.append((var, 0, 0, "<f8"))
            continue
        start = 0
        for width in var.segments:
            fields.append((var, start, width, f"S{_storage(width)}"))
            start += 255
    record = np.dtype([(f"f{n}", kind) for n, (_v, _s, _w, kind) in enumerate(fields)])
    with path.open("wb") as handle:
        handle.write(out)
        for batch in dataset.batches(RECORD_BATCH):
            rows = np.empty(batch.num_rows, dtype=record)
            texts: dict[str, pa.Array] = {}
            for n, (var, start, width, _kind) in enumerate(fields):
                if not var.width:
                    rows[f"f{n}"] = _numbers(var.column, batch.column(var.column.name))
                    continue
                if var.column.name not in texts:
                    texts[var.column.name] = _text(batch.column(var.column.name))
                values = texts[var.column.name]
                if len(var.segments) > 1:
                    rows[f"f{n}"] = _segment(values, start, _storage(width))
                else:
                    rows[f"f{n}"] = _fixed(values, _storage(width))
            handle.write(rows.data)  # the array's own buffer: no copy as bytes


WRITER = Writer(format_id="sav", extension="sav", write=write)
