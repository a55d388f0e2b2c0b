"""A timepoint's status, derived from stored facts and the clock (pure).

Nothing here is a stored state machine: status is recomputed from
(window instants, submitted?, started?, not-expected reason, now). So a
scheduler that was down for three days puts every timepoint in the right
state on its next sweep, and re-running a sweep changes nothing.

Precedence, first match wins:

1. ``completed``   - submitted. A received form counts even if the patient was
   later marked ended (data beats bookkeeping; nothing is thrown away).
2. ``not_expected`` - a reason is recorded (died / withdrawn / lost).
3. ``scheduled``   - now < opens_at.
4. ``open``        - opens_at <= now < closes_at.
5. ``overdue``     - closes_at <= now < grace_closes_at: a late form is still
   accepted (and reported as late, see :func:`is_late`).
6. ``partial``     - grace over, answers started but never submitted.
7. ``missed``      - grace over, nothing.

All bounds are half-open ``[start, end)`` on aware UTC instants.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal, Protocol

__all__ = ["STATUSES", "Status", "TimedWindow", "derive_status", "is_late"]

Status = Literal["scheduled", "open", "overdue", "completed", "partial", "missed", "not_expected"]
STATUSES: Final[tuple[str, ...]] = (
    "scheduled",
    "open",
    "overdue",
    "completed",
    "partial",
    "missed",
    "not_expected",
)


class TimedWindow(Protocol):
    """Anything with the three window instants (a PlannedTimepoint or a DB row)."""

    @property
    def opens_at(self) -> datetime: ...

    @property
    def closes_at(self) -> datetime: ...

    @property
    def grace_closes_at(self) -> datetime: ...


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC), got naive {value!r}")


def derive_status(
    tp: TimedWindow,
    now_utc: datetime,
    *,
    submitted: bool,
    started: bool,
    not_expected_reason: str | None,
) -> Status:
    """Status of ``tp`` at ``now_utc`` (see module doc for precedence)."""
    _require_aware(now_utc, "now_utc")
    if submitted:
        return "completed"
    if not_expected_reason:
        return "not_expected"
    if now_utc < tp.opens_at:
        return "scheduled"
    if now_utc < tp.closes_at:
        return "open"
    if now_utc < tp.grace_closes_at:
        return "overdue"
    return "partial" if started else "missed"


def is_late(tp: TimedWindow, submitted_at: datetime) -> bool:
    """True when the form was submitted at or after ``closes_at`` (in grace or later).

    For "on time / late" reporting; a late form still counts as completed.
    """
    _require_aware(submitted_at, "submitted_at")
    return submitted_at >= tp.closes_at
