"""Windows land on the right local days across DST, in zones with and without it.

Property: for randomization dates around real transitions, every key occurs
once; opens_at is the first instant of window_start in the patient's zone
(00:00 local, or - where midnight does not exist - the transition itself,
see qol_app.scheduling.timewindows); closes_at is the first instant of
window_end + 1; grace likewise.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qol_app.scheduling import (
    SCHEDULES_DIR,
    EventFact,
    PatientFacts,
    PlannedTimepoint,
    load_schedule,
    local_date_of,
    local_day_start,
    plan,
)
from qol_app.scheduling.timewindows import day_after_start

SCHEDULES = [
    load_schedule(SCHEDULES_DIR / "conquer.yaml"),
    load_schedule(SCHEDULES_DIR / "fixed_calendar.example.yaml"),
]
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Asia/Shanghai"]
# Zones whose DST change happens *at* midnight: the documented edge cases.
MIDNIGHT_ZONES = ["America/Havana", "America/Santiago", "Africa/Cairo"]
D = timedelta(days=1)
EPS = timedelta(microseconds=1)


@cache
def transitions(name: str) -> tuple[date, ...]:
    """Local dates in 2024-2027 on which the zone's UTC offset changes."""
    tz = ZoneInfo(name)
    found = []
    day = date(2024, 1, 1)
    while day < date(2028, 1, 1):
        if datetime.combine(day, time(12), tz).utcoffset() != datetime.combine(day + D, time(12), tz).utcoffset():
            found.append(day + D)
        day += D
    return tuple(found) or (date(2026, 3, 29), date(2026, 10, 25))  # no DST: any dates


def assert_first_instant_of(instant: datetime, day: date, tz: ZoneInfo) -> None:
    assert instant.utcoffset() == timedelta(0), "instants are stored in UTC"
    local = instant.astimezone(tz)
    assert local.date() == day
    assert (instant - EPS).astimezone(tz).date() < day, "nothing earlier belongs to that day"
    if local.time() != time(0):
        # documented resolution: midnight does not exist, the day starts at the transition
        midnight = datetime.combine(day, time(0), tz)
        assert midnight.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != midnight.replace(tzinfo=None)


@st.composite
def scenarios(draw: st.DrawFn, zones: list[str]) -> tuple[int, PatientFacts, list[EventFact], date]:
    name = draw(st.sampled_from(zones))
    pivot = draw(st.sampled_from(transitions(name)))
    rand = pivot + draw(st.integers(-60, 10)) * D
    events: list[EventFact] = []
    day = rand + draw(st.integers(0, 5)) * D
    for n in range(1, draw(st.integers(0, 5)) + 1):
        length = draw(st.sampled_from([14, 21, 28]))
        events.append(EventFact(f"c{n}", "systemic_cycle", day, n, length))
        day += (length + draw(st.integers(0, 10))) * D  # delays
    it_day = rand + draw(st.integers(0, 5)) * D
    for n in range(1, draw(st.integers(0, 6)) + 1):
        events.append(EventFact(f"it{n}", "intrathecal_dose", it_day, n))
        it_day += draw(st.sampled_from([3, 4, 7, 28])) * D
    if draw(st.booleans()):
        events.append(EventFact("p", "progression", rand + draw(st.integers(20, 120)) * D))
    if draw(st.booleans()):
        events.append(EventFact("eot", "end_of_treatment", rand + draw(st.integers(30, 150)) * D))
    end: dict[str, object] = {}
    if draw(st.booleans()):
        end = {
            "end_status": draw(st.sampled_from(["died", "withdrawn", "lost"])),
            "end_date": rand + draw(st.integers(10, 250)) * D,
        }
    patient = PatientFacts(draw(st.sampled_from(["A", "B"])), rand, name, **end)  # type: ignore[arg-type]
    today = rand + draw(st.integers(0, 400)) * D
    return draw(st.integers(0, len(SCHEDULES) - 1)), patient, events, today


def check(schedule_index: int, patient: PatientFacts, events: list[EventFact], today: date) -> None:
    schedule = SCHEDULES[schedule_index]
    tz = ZoneInfo(patient.timezone)
    tps = plan(schedule, patient, events, today)
    keys = [tp.key for tp in tps]
    assert len(keys) == len(set(keys)), "each key exactly once"
    assert tps == plan(schedule, patient, list(reversed(events)), today), "deterministic"
    for tp in tps:
        check_one(tp, schedule_index, tz)


def check_one(tp: PlannedTimepoint, schedule_index: int, tz: ZoneInfo) -> None:
    assert tp.window_start <= tp.target_date <= tp.window_end <= tp.grace_end
    assert_first_instant_of(tp.opens_at, tp.window_start, tz)
    assert_first_instant_of(tp.closes_at, tp.window_end + D, tz)
    assert_first_instant_of(tp.grace_closes_at, tp.grace_end + D, tz)
    assert local_date_of(tp.closes_at, tz) == tp.window_end + D
    # every instant in [opens_at, closes_at) is on a window day, locally
    assert local_date_of(tp.closes_at - EPS, tz) == tp.window_end
    days = (tp.window_end - tp.window_start).days + 1
    hours = (tp.closes_at - tp.opens_at) / timedelta(hours=1)
    assert days * 24 - 1 <= hours <= days * 24 + 1, "a DST day is 23 or 25 hours, never a day off"
    if tp.kind == "diary":
        assert tp.key == f"diary-{tp.target_date.isoformat()}"
        assert tp.window_start == tp.window_end == tp.target_date
        assert len({s.anchor.date + timedelta(days=s.day) for s in tp.sources}) == 1
    else:
        rule = SCHEDULES[schedule_index].rule(tp.rule_id)
        assert rule.window is not None
        if rule.window.until_next_cycle and tp.window_end < tp.target_date + rule.window.after * D:
            # cut short by the next administration: never longer, a one-day window at least
            assert tp.window_end == tp.grace_end
            assert tp.window_start == tp.target_date - rule.window.before * D or tp.window_start == tp.target_date
        else:
            assert tp.window_start == tp.target_date - rule.window.before * D
            assert tp.window_end == tp.target_date + rule.window.after * D


@settings(database=None, max_examples=300, deadline=None)
@given(scenarios(ZONES))
def test_windows_around_dst(scenario: tuple[int, PatientFacts, list[EventFact], date]) -> None:
    check(*scenario)


@settings(database=None, max_examples=100, deadline=None)
@given(scenarios(MIDNIGHT_ZONES))
def test_windows_where_midnight_is_skipped_or_repeated(
    scenario: tuple[int, PatientFacts, list[EventFact], date],
) -> None:
    check(*scenario)


def test_nonexistent_midnight_starts_at_the_transition() -> None:
    havana = ZoneInfo("America/Havana")  # 2026-03-08: 00:00 -> 01:00
    start = local_day_start(date(2026, 3, 8), havana)
    assert start == datetime(2026, 3, 8, 5, 0, tzinfo=UTC)
    assert start.astimezone(havana).time() == time(1, 0)
    assert local_day_start(date(2026, 3, 9), havana) - start == timedelta(hours=23)


def test_repeated_midnight_uses_first_occurrence() -> None:
    havana = ZoneInfo("America/Havana")  # 2026-11-01: 01:00 -> 00:00, midnight twice
    start = local_day_start(date(2026, 11, 1), havana)
    assert start == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 at UTC-4 (fold=0)
    assert local_day_start(date(2026, 11, 2), havana) - start == timedelta(hours=25)


@pytest.mark.parametrize(
    ("name", "day", "hours"),
    [
        ("Europe/Berlin", date(2026, 3, 29), 23),
        ("Europe/Berlin", date(2026, 10, 25), 25),
        ("America/New_York", date(2026, 3, 8), 23),
        ("Australia/Sydney", date(2026, 4, 5), 25),
        ("Australia/Sydney", date(2026, 10, 4), 23),
        ("Asia/Kolkata", date(2026, 3, 29), 24),
        ("Asia/Shanghai", date(2026, 3, 29), 24),
    ],
)
def test_diary_day_length_on_transition_days(name: str, day: date, hours: int) -> None:
    tz = ZoneInfo(name)
    patient = PatientFacts("A", day - 30 * D, name)
    events = [EventFact(1, "intrathecal_dose", day - 1 * D, 1)]
    tp = next(t for t in plan(SCHEDULES[0], patient, events, day) if t.key == f"diary-{day.isoformat()}")
    assert tp.opens_at.astimezone(tz).replace(tzinfo=None) == datetime.combine(day, time(0))
    assert tp.closes_at - tp.opens_at == timedelta(hours=hours)


class _NoOffset(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


def test_day_boundaries_are_utc_instants_of_the_patients_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    start = local_day_start(date(2026, 3, 3), shanghai)
    assert start == datetime(2026, 3, 2, 16, tzinfo=UTC) and start.tzinfo is UTC
    end = day_after_start(date(2026, 3, 3), shanghai)
    assert end == datetime(2026, 3, 3, 16, tzinfo=UTC) and end.tzinfo is UTC
    assert local_date_of(datetime(2026, 3, 2, 16, tzinfo=UTC), shanghai) == date(2026, 3, 3)
    assert local_date_of(datetime(2026, 3, 2, 15, 59, tzinfo=UTC), shanghai) == date(2026, 3, 2)


@pytest.mark.parametrize("instant", [datetime(2026, 3, 3, 12), datetime(2026, 3, 3, 12, tzinfo=_NoOffset())])
def test_local_date_of_refuses_a_naive_instant(instant: datetime) -> None:
    with pytest.raises(ValueError, match="^instant must be timezone-aware$"):
        local_date_of(instant, ZoneInfo("Asia/Shanghai"))
