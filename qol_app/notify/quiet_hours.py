"""Quiet hours in the patient's local time (pure: no clock, no config reads).

A reminder that falls due at 03:00 local must wait until the morning, and "the morning" is a
wall-clock time in the patient's zone, so every conversion goes through ``zoneinfo`` here:

* The quiet period is ``[start, end)`` local wall-clock time; ``start > end`` wraps midnight
  (the default 21:00-08:00), ``start == end`` means no quiet hours at all.
* The next allowed instant is the next local ``end`` time. On a DST spring-forward day where
  that wall-clock time does not exist, ``fold=0`` lands on the first instant after the gap
  (never earlier than the intended time); on a fall-back day it picks the first occurrence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

__all__ = ["QuietHours", "local_instant", "next_allowed", "parse_hhmm"]


def parse_hhmm(value: str | dt.time) -> dt.time:
    """``"21:00"`` -> ``time(21, 0)``; ValueError naming the bad value."""
    if isinstance(value, dt.time):
        return value
    try:
        hours, minutes = str(value).strip().split(":")
        return dt.time(int(hours), int(minutes))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"a time of day must look like HH:MM, got {value!r}") from exc


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local wall-clock hours during which patients get no messages."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, start: str | dt.time, end: str | dt.time) -> QuietHours:
        return cls(parse_hhmm(start), parse_hhmm(end))

    def is_quiet(self, local: dt.time) -> bool:
        """Whether a local wall-clock time falls in the quiet period."""
        local = local.replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def local_instant(day: dt.date, at: dt.time, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of local wall-clock ``at`` on ``day`` (see module doc for DST gaps)."""
    return dt.datetime.combine(day, at.replace(tzinfo=None), tzinfo=tz).replace(fold=0).astimezone(dt.UTC)


def next_allowed(instant: dt.datetime, tz: ZoneInfo, quiet: QuietHours) -> dt.datetime:
    """``instant`` itself if it is outside quiet hours locally, else the next local ``end``."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("instant must be timezone-aware")
    local = instant.astimezone(tz)
    if not quiet.is_quiet(local.time()):
        return instant.astimezone(dt.UTC)
    candidate = local_instant(local.date(), quiet.end, tz)
    if candidate <= instant:
        candidate = local_instant(local.date() + dt.timedelta(days=1), quiet.end, tz)
    return candidate
