"""When an unacknowledged amber alert must be escalated to red (CLINICAL.md §5).

Pure functions over timezone-aware datetimes: the scheduler passes ``now`` so
the same decision can be replayed in tests and audits. Naive datetimes are
rejected because mixing server-local and UTC times would shift the deadline
by the UTC offset (8 h in China).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from qol_app.alerts.rules import LEVELS

DEFAULT_ESCALATION_HOURS = 24


def escalation_due_at(raised_at: datetime, hours: float = DEFAULT_ESCALATION_HOURS) -> datetime:
    """The moment an amber alert raised at ``raised_at`` escalates if still unacknowledged."""
    _require_aware("raised_at", raised_at)
    return raised_at + timedelta(hours=_check_hours(hours))


def needs_escalation(
    level: str,
    raised_at: datetime,
    acknowledged_at: datetime | None,
    now: datetime,
    hours: float = DEFAULT_ESCALATION_HOURS,
) -> bool:
    """True if an amber alert has gone ``hours`` or more without acknowledgement as of ``now``.

    Red alerts never escalate further. An acknowledgement counts only once it has
    happened (``acknowledged_at <= now``), so replaying history gives the answer
    that was true at that moment. Raises ValueError on a naive datetime, an
    unknown level, non-positive ``hours`` or an acknowledgement before the alert.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
    _require_aware("raised_at", raised_at)
    _require_aware("now", now)
    if acknowledged_at is not None:
        _require_aware("acknowledged_at", acknowledged_at)
        if acknowledged_at < raised_at:
            raise ValueError(
                f"acknowledged_at {acknowledged_at.isoformat()} precedes raised_at {raised_at.isoformat()}"
            )
    due = raised_at + timedelta(hours=_check_hours(hours))
    if level != "amber":
        return False
    acknowledged = acknowledged_at is not None and acknowledged_at <= now
    return not acknowledged and now >= due


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _check_hours(hours: float) -> float:
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 < hours < math.inf:
        raise ValueError(f"hours must be a positive number, got {hours!r}")
    return hours
