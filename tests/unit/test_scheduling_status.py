"""derive_status / is_late at every boundary (half-open intervals, UTC instants)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

import pytest

from qol_app.scheduling import (
    SCHEDULES_DIR,
    STATUSES,
    PatientFacts,
    derive_status,
    is_late,
    load_schedule,
    plan,
)

EPS = timedelta(microseconds=1)
(TP,) = plan(
    load_schedule(SCHEDULES_DIR / "conquer.yaml"),
    PatientFacts("A", date(2026, 3, 2), "Asia/Shanghai"),
    [],
    date(2026, 3, 2),
)


def status(now: datetime, *, submitted: bool = False, started: bool = False, reason: str | None = None) -> str:
    return derive_status(TP, now, submitted=submitted, started=started, not_expected_reason=reason)


@pytest.mark.parametrize(
    ("now", "started", "expected"),
    [
        (TP.opens_at - EPS, False, "scheduled"),
        (TP.opens_at, False, "open"),
        (TP.closes_at - EPS, True, "open"),
        (TP.closes_at, False, "overdue"),
        (TP.closes_at, True, "overdue"),
        (TP.grace_closes_at - EPS, False, "overdue"),
        (TP.grace_closes_at, False, "missed"),
        (TP.grace_closes_at, True, "partial"),
        (TP.grace_closes_at + timedelta(days=400), False, "missed"),
    ],
)
def test_boundaries(now: datetime, started: bool, expected: str) -> None:
    assert status(now, started=started) == expected
    assert expected in STATUSES


def test_boundaries_are_local_midnights() -> None:
    # Shanghai: window 23 Feb .. 2 Mar, grace to 5 Mar (local dates)
    assert TP.opens_at == datetime(2026, 2, 23, tzinfo=timezone(timedelta(hours=8)))
    assert status(datetime(2026, 3, 2, 23, 59, tzinfo=timezone(timedelta(hours=8)))) == "open"
    assert status(datetime(2026, 3, 3, 0, 0, tzinfo=timezone(timedelta(hours=8)))) == "overdue"


def test_completed_wins_at_any_time_even_if_not_expected() -> None:
    for now in (TP.opens_at - EPS, TP.opens_at, TP.closes_at, TP.grace_closes_at + EPS):
        assert status(now, submitted=True) == "completed"
        assert status(now, submitted=True, started=True, reason="died") == "completed"


def test_not_expected_wins_over_clock() -> None:
    for now in (TP.opens_at - EPS, TP.opens_at, TP.closes_at, TP.grace_closes_at):
        assert status(now, started=True, reason="withdrawn") == "not_expected"


def test_sweep_after_downtime_gives_same_answer_as_timely_sweeps() -> None:
    # state is a function of (data, clock): no history needed
    late_sweep = TP.grace_closes_at + timedelta(days=3)
    assert status(late_sweep) == "missed"
    assert status(late_sweep, started=True) == "partial"


def test_naive_now_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        status(datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        is_late(TP, datetime(2026, 3, 1))


def test_is_late() -> None:
    assert not is_late(TP, TP.opens_at)
    assert not is_late(TP, TP.closes_at - EPS)
    assert is_late(TP, TP.closes_at)
    assert is_late(TP, TP.grace_closes_at + timedelta(days=1))
    assert not is_late(TP, (TP.closes_at - EPS).astimezone(timezone(timedelta(hours=-5))))
    assert TP.closes_at.tzinfo is not None and TP.closes_at.utcoffset() == UTC.utcoffset(None)


class _NoOffset(tzinfo):
    """A tzinfo that knows no offset: the datetime is as good as naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


@pytest.mark.parametrize("value", [datetime(2026, 3, 3, 12), datetime(2026, 3, 3, 12, tzinfo=_NoOffset())])
def test_naive_instants_are_refused_naming_the_argument(value: datetime) -> None:
    with pytest.raises(ValueError, match="^now_utc must be a timezone-aware"):
        derive_status(TP, value, submitted=False, started=False, not_expected_reason=None)
    with pytest.raises(ValueError, match="^submitted_at must be a timezone-aware"):
        is_late(TP, value)
