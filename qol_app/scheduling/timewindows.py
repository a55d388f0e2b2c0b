"""Local calendar days -> UTC instants, done once and correctly across DST.

Windows are defined on the patient's local calendar (a diary day is the day
the patient lives through), but storage and the status sweep work in UTC.
Every conversion goes through :func:`local_day_start`, so there is exactly one
rule for awkward days:

* A day starts at the first instant whose local date is that day.
* ``zoneinfo`` with ``fold=0`` gives exactly that instant in both odd cases:
  - midnight does not exist (clocks jump 00:00 -> 01:00, e.g. America/Havana
    in March): fold=0 applies the pre-transition offset, which lands on the
    transition itself, i.e. 01:00 local, the first moment of that date;
  - midnight happens twice (clocks fall back 01:00 -> 00:00, e.g.
    America/Havana in November): fold=0 picks the first occurrence.
* A calendar date that a zone skips entirely (Pacific/Apia, 2011-12-30)
  yields an empty window (start == end); there is no day to answer on.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["day_after_start", "local_date_of", "local_day_start", "zone"]


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """Return the IANA zone ``name``; ValueError (not a KeyError subclass) if unknown."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"timezone must be a non-empty IANA name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA timezone {name!r}") from exc


def local_day_start(day: date, tz: ZoneInfo) -> datetime:
    """First UTC instant of local calendar ``day`` in ``tz`` (see module doc for DST)."""
    local = datetime.combine(day, time(), tzinfo=tz).replace(fold=0)
    return local.astimezone(UTC)


def local_date_of(instant: datetime, tz: ZoneInfo) -> date:
    """The patient's local calendar date at an aware ``instant`` (e.g. today's diary day)."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("instant must be timezone-aware")
    return instant.astimezone(tz).date()


def day_after_start(day: date, tz: ZoneInfo) -> datetime:
    """Exclusive end of local ``day``: the start of the following local day."""
    return local_day_start(day + timedelta(days=1), tz)
