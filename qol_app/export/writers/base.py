"""What every format writer shares: the Writer record and the options passed to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from qol_app.export.schema import LOCALES, ROW_BATCH, Dataset, Locale

DEFAULT_AS_OF = datetime(2000, 1, 1, tzinfo=UTC)
RECORD_BATCH = 10_000
"""Rows a fixed-width writer (SAS transport, Stata, SPSS) packs at once. Its records are as wide as
every text column's longest value (the QS domain's are hundreds of bytes), so a batch of these is
several megabytes where a ROW_BATCH of them would be tens."""
"""Stamped into file metadata when the caller gives no as-of time, so output stays reproducible."""

__all__ = ["DEFAULT_AS_OF", "ROW_BATCH", "WriteOptions", "Writer", "naive_utc", "utc_iso"]


@dataclass(frozen=True)
class WriteOptions:
    """Per-export settings: label language and the as-of time stamped into file metadata."""

    locale: Locale = "en"
    as_of: datetime = DEFAULT_AS_OF

    def __post_init__(self) -> None:
        if self.locale not in LOCALES:
            raise ValueError(f"locale {self.locale!r} not one of {LOCALES}")
        if self.as_of.utcoffset() is None:
            raise ValueError("as_of must be timezone-aware")
        object.__setattr__(self, "as_of", self.as_of.astimezone(UTC))


WriteFn = Callable[[Dataset, Path, WriteOptions], None]


@dataclass(frozen=True)
class Writer:
    """A file format: its id, file extension and the write function."""

    format_id: str
    extension: str
    write: WriteFn


def naive_utc(moment: datetime) -> datetime:
    """UTC wall time without tzinfo, for formats that cannot store an offset (labels say UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a 'Z' suffix, e.g. 2026-03-01T08:15:00Z."""
    return naive_utc(moment).isoformat() + "Z"
