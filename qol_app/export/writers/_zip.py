"""Zip archives whose bytes depend only on their content, not on the clock or the platform.

Deflate is ISA-L's (python-isal, level 1), not zlib's: at the same ratio it is about four times
faster, and an export of a large trial deflates gigabytes (the XLSX sheets and the bundle).
"""

from __future__ import annotations

import shutil
import zlib
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal
from zipfile import ZIP64_LIMIT, ZIP_DEFLATED, ZipFile, ZipInfo

from isal import isal_zlib

DEFLATE_LEVEL = 1
"""ISA-L level 1 (of 0-3): zlib level 1's ratio on export files, at about four times its speed."""

ZipTime = tuple[int, int, int, int, int, int]


def zip_time(moment: datetime) -> ZipTime:
    """The wall-clock fields of `moment` as a ZipInfo date_time (zip stores no timezone)."""
    if moment.year < 1980:
        raise ValueError("zip timestamps start in 1980")
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def fixed_info(name: str, date_time: ZipTime) -> ZipInfo:
    """A ZipInfo with everything that normally varies (time, host OS, permissions) pinned."""
    info = ZipInfo(name, date_time=date_time)
    info.compress_type = ZIP_DEFLATED
    info.create_system = 3  # Unix, whatever the host: ZipInfo defaults to 0 on Windows
    info.external_attr = 0o644 << 16
    return info


class FixedTimeZipFile(ZipFile):
    """ZipFile that stamps every entry with one fixed time, whoever adds it."""

    def __init__(self, file: str | Path | IO[bytes], *, date_time: ZipTime) -> None:
        super().__init__(file, "w", compression=ZIP_DEFLATED, allowZip64=True)
        self.fixed_date_time = date_time

    def open(
        self, name: str | ZipInfo, mode: Literal["r", "w"] = "r", pwd: bytes | None = None, *, force_zip64: bool = False
    ) -> IO[bytes]:
        """As ZipFile.open; an entry written deflated is deflated by ISA-L. zipfile has no hook
        for its compressor: the new entry's, made by zipfile and not yet used, is replaced."""
        handle = super().open(name, mode, pwd, force_zip64=force_zip64)
        kind = name.compress_type if isinstance(name, ZipInfo) else self.compression
        if mode == "w" and kind == ZIP_DEFLATED:
            if getattr(handle, "_compressor", None) is None:
                raise RuntimeError("zipfile no longer has a compressor to replace: see writers/_zip.py")
            handle._compressor = isal_zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)  # type: ignore[attr-defined]
        return handle

    def writestr(
        self,
        zinfo_or_arcname: str | ZipInfo,
        data: Any,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        name = zinfo_or_arcname.filename if isinstance(zinfo_or_arcname, ZipInfo) else zinfo_or_arcname
        super().writestr(fixed_info(name, self.fixed_date_time), data, compress_type, compresslevel)

    def write(
        self,
        filename: Any,
        arcname: Any = None,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        source = Path(filename)
        info = fixed_info(str(arcname) if arcname is not None else source.name, self.fixed_date_time)
        large = source.stat().st_size >= ZIP64_LIMIT
        with source.open("rb") as src, self.open(info, "w", force_zip64=large) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
