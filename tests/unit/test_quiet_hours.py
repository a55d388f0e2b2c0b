"""Quiet hours in the patient's local time, across midnight and DST changes (pure)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from qol_app.notify.quiet_hours import QuietHours, local_instant, next_allowed, parse_hhmm
from qol_app.services.notifications import ReminderSettings, call_task_due, newest_due_reminder, pick_channel

DEFAULT = QuietHours.parse("21:00", "08:00")
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("local", "quiet"),
    [("07:59", True), ("08:00", False), ("12:00", False), ("20:59", False), ("21:00", True), ("00:00", True)],
)
def test_default_quiet_period_wraps_midnight(local, quiet):
    assert DEFAULT.is_quiet(parse_hhmm(local)) is quiet


def test_quiet_period_inside_one_day_and_disabled():
    lunch = QuietHours.parse("12:00", "13:30")
    assert lunch.is_quiet(dt.time(12, 0)) and lunch.is_quiet(dt.time(13, 29))
    assert not lunch.is_quiet(dt.time(13, 30)) and not lunch.is_quiet(dt.time(11, 59))
    assert not QuietHours.parse("08:00", "08:00").is_quiet(dt.time(3, 0))


def test_bad_time_is_refused_with_its_value():
    with pytest.raises(ValueError, match="'25h'"):
        parse_hhmm("25h")


def test_allowed_instant_is_returned_unchanged():
    noon_shanghai = utc(2026, 3, 10, 4, 0)
    assert next_allowed(noon_shanghai, SHANGHAI, DEFAULT) == noon_shanghai


def test_late_evening_waits_for_next_morning_local():
    # 22:30 in Shanghai (14:30 UTC) -> 08:00 next day in Shanghai = 00:00 UTC.
    assert next_allowed(utc(2026, 3, 10, 14, 30), SHANGHAI, DEFAULT) == utc(2026, 3, 11, 0, 0)


def test_small_hours_wait_for_same_morning_local():
    # 03:00 in Shanghai on 11 March (19:00 UTC on 10 March) -> 08:00 the same local day.
    assert next_allowed(utc(2026, 3, 10, 19, 0), SHANGHAI, DEFAULT) == utc(2026, 3, 11, 0, 0)


def test_quiet_hours_follow_the_patient_zone_not_the_server():
    instant = utc(2026, 3, 10, 14, 30)  # 22:30 in Shanghai, 10:30 in New York
    assert next_allowed(instant, NEW_YORK, DEFAULT) == instant
    assert next_allowed(instant, SHANGHAI, DEFAULT) > instant


def test_spring_forward_night_still_gives_eight_local():
    # New York springs forward on 8 March 2026 (02:00 -> 03:00): 08:00 EDT is 12:00 UTC,
    # while the night before, 08:00 EST was 13:00 UTC.
    night = dt.datetime(2026, 3, 8, 1, 30, tzinfo=NEW_YORK)
    allowed = next_allowed(night, NEW_YORK, DEFAULT)
    assert allowed == utc(2026, 3, 8, 12, 0)
    assert allowed.astimezone(NEW_YORK).time() == dt.time(8, 0)
    before = next_allowed(dt.datetime(2026, 3, 7, 1, 30, tzinfo=NEW_YORK), NEW_YORK, DEFAULT)
    assert before == utc(2026, 3, 7, 13, 0)


def test_fall_back_night_gives_eight_local_after_a_25_hour_night():
    # London falls back on 25 October 2026 (02:00 BST -> 01:00 GMT).
    evening = dt.datetime(2026, 10, 24, 22, 0, tzinfo=LONDON)  # 21:00 UTC
    allowed = next_allowed(evening, LONDON, DEFAULT)
    assert allowed == utc(2026, 10, 25, 8, 0)
    assert allowed.astimezone(LONDON).time() == dt.time(8, 0)


def test_end_in_a_dst_gap_lands_just_after_the_gap():
    # Quiet until 02:30, which does not exist in New York on 8 March 2026: the first allowed
    # moment is after the jump, never before 02:30 wall-clock time.
    quiet = QuietHours.parse("23:00", "02:30")
    allowed = next_allowed(dt.datetime(2026, 3, 8, 1, 0, tzinfo=NEW_YORK), NEW_YORK, quiet)
    assert allowed.astimezone(NEW_YORK).time() >= dt.time(3, 0)
    assert not quiet.is_quiet(allowed.astimezone(NEW_YORK).time())


def test_repeated_hour_uses_its_first_occurrence():
    quiet = QuietHours.parse("23:00", "01:30")  # 01:30 happens twice in New York on 1 Nov 2026
    allowed = next_allowed(dt.datetime(2026, 10, 31, 23, 30, tzinfo=NEW_YORK), NEW_YORK, quiet)
    assert allowed == local_instant(dt.date(2026, 11, 1), dt.time(1, 30), NEW_YORK)
    assert allowed == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, the first of the two


def test_naive_instant_is_refused():
    with pytest.raises(ValueError):
        next_allowed(dt.datetime(2026, 3, 10, 12, 0), SHANGHAI, DEFAULT)


# ---- which reminder is due (pure decisions used by the sweep) ------------------------------
SETTINGS = ReminderSettings()
OPENS = utc(2026, 3, 22, 16, 0)  # 23 March 00:00 in Shanghai
CLOSES = OPENS + dt.timedelta(days=7)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (dt.timedelta(seconds=-1), None),
        (dt.timedelta(0), 1),
        (dt.timedelta(days=2) - dt.timedelta(seconds=1), 1),
        (dt.timedelta(days=2), 2),  # only the newest: after downtime r2 replaces r1
        (dt.timedelta(days=6, hours=23), 2),
        (dt.timedelta(days=7), None),  # window closed: nothing, ever
    ],
)
def test_newest_due_questionnaire_reminder(offset, expected):
    due = newest_due_reminder("questionnaire", OPENS, CLOSES, OPENS + offset, SHANGHAI, SETTINGS)
    assert (due[0] if due else None) == expected


def test_diary_gets_one_reminder_at_its_local_time():
    opens = utc(2026, 3, 12, 16, 0)
    closes = opens + dt.timedelta(days=1)
    nine = utc(2026, 3, 13, 1, 0)  # 09:00 in Shanghai
    assert newest_due_reminder("diary", opens, closes, nine - dt.timedelta(seconds=1), SHANGHAI, SETTINGS) is None
    assert newest_due_reminder("diary", opens, closes, nine, SHANGHAI, SETTINGS) == (1, nine)
    assert newest_due_reminder("diary", opens, closes, closes - dt.timedelta(seconds=1), SHANGHAI, SETTINGS) == (
        1,
        nine,
    )
    assert not call_task_due("diary", closes, closes - dt.timedelta(hours=1), SETTINGS)


def test_call_task_in_the_last_day_only():
    assert not call_task_due("questionnaire", CLOSES, CLOSES - dt.timedelta(days=1, seconds=1), SETTINGS)
    assert call_task_due("questionnaire", CLOSES, CLOSES - dt.timedelta(days=1), SETTINGS)
    assert not call_task_due("questionnaire", CLOSES, CLOSES, SETTINGS)


def test_channel_preference_and_missing_contact():
    assert pick_channel("a@example.org", "138", SETTINGS) == ("sms", "138")
    assert pick_channel("a@example.org", None, SETTINGS) == ("email", "a@example.org")
    assert pick_channel(None, None, SETTINGS) is None
    email_first = ReminderSettings(channels=("email", "sms"))
    assert pick_channel("a@example.org", "138", email_first) == ("email", "a@example.org")
