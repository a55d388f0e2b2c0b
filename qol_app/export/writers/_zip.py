"""Zip archives whose bytes depend only on their content, not on the clock or the platform."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from zipfile import ZIP64_LIMIT, ZIP_DEFLATED, ZipFile, ZipInfo

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
