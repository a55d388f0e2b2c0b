"""plan(): one test per rule type of CLINICAL.md §2, plus the awkward cases."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from qol_app.scheduling import (
    SCHEDULES_DIR,
    EventFact,
    PatientFacts,
    PlannedTimepoint,
    PlanningError,
    Schedule,
    load_schedule,
    parse_schedule,
    plan,
    plan_ahead,
)

CONQUER = load_schedule(SCHEDULES_DIR / "conquer.yaml")
CALENDAR = load_schedule(SCHEDULES_DIR / "fixed_calendar.example.yaml")
QOL = ("eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l")
RAND = date(2026, 3, 2)
D = timedelta(days=1)


def patient(arm: str = "A", tz: str = "Asia/Shanghai", **end: Any) -> PatientFacts:
    return PatientFacts(arm=arm, randomization_date=RAND, timezone=tz, **end)


def by_key(tps: list[PlannedTimepoint]) -> dict[str, PlannedTimepoint]:
    keys = [tp.key for tp in tps]
    assert len(keys) == len(set(keys)), "keys must be unique"
    return {tp.key: tp for tp in tps}


def cycle(event_id: int, start: date, number: int | None, length: int | None = 21) -> EventFact:
    return EventFact(event_id, "systemic_cycle", start, number, length)


def test_baseline_day0_window_minus7_to_0_both_arms() -> None:
    for arm in ("A", "B"):
        (tp,) = plan(CONQUER, patient(arm), [], RAND)
        assert tp.key == "baseline" and tp.rule_id == "baseline" and tp.kind == "questionnaire"
        assert tp.target_date == RAND
        assert (tp.window_start, tp.window_end, tp.grace_end) == (RAND - 7 * D, RAND, RAND + 3 * D)
        assert tp.instruments == QOL
        assert tp.anchor.kind == "randomization" and tp.anchor.event_id is None and tp.anchor.date == RAND
        assert tp.expected and tp.not_expected_reason is None


def test_instants_are_local_midnights_in_utc() -> None:
    (tp,) = plan(CONQUER, patient(tz="Asia/Shanghai"), [], RAND)
    assert tp.opens_at == datetime(2026, 2, 22, 16, 0, tzinfo=UTC)  # 23 Feb 00:00 +08:00
    assert tp.closes_at == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # 3 Mar 00:00 +08:00, exclusive
    assert tp.grace_closes_at == datetime(2026, 3, 5, 16, 0, tzinfo=UTC)
    assert tp.opens_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("length", [14, 21, 28])
def test_systemic_cycle_target_is_the_cycles_last_day(length: int) -> None:
    # Day 1 is the administration day: cycle day 21 of a 21-day cycle is start + 20.
    start = date(2026, 3, 4)
    tps = by_key(plan(CONQUER, patient("B"), [cycle(10, start, 3, length)], RAND))
    tp = tps["sys-c3"]
    assert tp.target_date == start + (length - 1) * D
    assert (tp.window_start, tp.window_end) == (tp.target_date - 3 * D, tp.target_date + 3 * D)
    assert tp.grace_end == tp.window_end + 3 * D
    assert tp.instruments == QOL
    assert (tp.anchor.kind, tp.anchor.event_id, tp.anchor.number, tp.anchor.date) == (
        "systemic_cycle",
        10,
        3,
        start,
    )
    assert [(s.rule_id, s.anchor.event_id, s.day) for s in tp.sources] == [("after_systemic_cycle", 10, length - 1)]


def test_28_day_cycle_with_next_cycle_on_time() -> None:
    # 28-day cycles given on time: day 28 = start + 27, window -3 ... +3 cut at the day before
    # the next administration (start + 28), nadir diaries on cycle days 8-15.
    start = date(2026, 3, 4)
    events = [cycle(1, start, 1, 28), cycle(2, start + 28 * D, 2, 28)]
    tps = by_key(plan(CONQUER, patient("B"), events, RAND))
    tp = tps["sys-c1"]
    assert tp.target_date == start + 27 * D
    assert (tp.window_start, tp.window_end, tp.grace_end) == (start + 24 * D, start + 27 * D, start + 27 * D)
    nadir = sorted(t.target_date for t in tps.values() if t.kind == "diary" and t.anchor.event_id == 1)
    assert nadir == [start + i * D for i in range(7, 15)]
    last = tps["sys-c2"]  # no next administration recorded yet: the full window and grace
    assert (last.window_start, last.window_end) == (start + 52 * D, start + 58 * D)
    assert last.grace_end == last.window_end + 3 * D


def test_window_closes_before_the_next_administration() -> None:
    start = date(2026, 3, 4)
    # the next cycle two days late: on day 23; the window keeps days 18-22, grace cut too
    late = by_key(plan(CONQUER, patient("B"), [cycle(1, start, 1), cycle(2, start + 22 * D, 2)], RAND))
    assert (late["sys-c1"].window_start, late["sys-c1"].window_end) == (start + 17 * D, start + 21 * D)
    assert late["sys-c1"].grace_end == start + 21 * D
    # the next cycle given early, before the window would open: one day, the day before it
    early = by_key(plan(CONQUER, patient("B"), [cycle(1, start, 1), cycle(2, start + 14 * D, 2)], RAND))
    tp = early["sys-c1"]
    assert tp.window_start == tp.window_end == tp.target_date == tp.grace_end == start + 13 * D


def test_cycle_without_length_uses_default_and_without_number_uses_order() -> None:
    events = [cycle(7, date(2026, 4, 1), None, None), cycle(5, date(2026, 3, 4), None, 14)]
    tps = by_key(plan(CONQUER, patient("B"), events, RAND))
    assert tps["sys-c1"].target_date == date(2026, 3, 17)  # first by date, 14 days: day 14
    assert tps["sys-c2"].target_date == date(2026, 4, 21)  # default 21 days: day 21


def test_the_first_cycles_window_closes_before_the_second_of_three_cycles() -> None:
    start = date(2026, 3, 4)  # cycle 2 given early (day 19), cycle 3 on time after it
    events = [cycle(1, start, 1), cycle(2, start + 18 * D, 2), cycle(3, start + 39 * D, 3)]
    tps = by_key(plan(CONQUER, patient("B"), events, RAND))
    assert (tps["sys-c1"].window_start, tps["sys-c1"].window_end) == (start + 17 * D, start + 17 * D)
    assert tps["sys-c2"].window_end == start + 38 * D


def test_two_cycles_recorded_on_one_day_do_not_cut_each_others_window() -> None:
    start = date(2026, 3, 4)
    tps = by_key(plan(CONQUER, patient("B"), [cycle(1, start, 1), cycle(2, start, 2)], RAND))
    for key in ("sys-c1", "sys-c2"):
        assert (tps[key].window_start, tps[key].window_end) == (start + 17 * D, start + 23 * D)


def test_a_randomization_rule_keyed_with_n_numbers_it_1() -> None:
    schedule = parse_schedule(
        {
            "schema_version": 1,
            "id": "screening",
            "arms": ["A", "B"],
            "lookahead_days": 35,
            "rules": [
                {
                    "id": "screen",
                    "kind": "questionnaire",
                    "anchor": "randomization",
                    "arms": "both",
                    "instruments": ["eq5d5l"],
                    "key": "screen-{n}",
                    "target": {"offset_days": 0},
                    "window": {"before": 0, "after": 7},
                }
            ],
        },
        source="inline",
    )
    assert [tp.key for tp in plan(schedule, patient(), [], RAND)] == ["screen-1"]


def test_a_patient_enrolled_after_the_baseline_grace_closed_was_never_offered_it() -> None:
    # baseline: window to RAND, grace to RAND + 3 days: closes RAND + 4 days 00:00 in Shanghai
    closes = datetime(2026, 3, 5, 16, 0, tzinfo=UTC)
    (late,) = plan(CONQUER, replace(patient(), enrolled_at=closes), [], RAND)
    assert late.grace_closes_at == closes and late.not_offered
    (in_time,) = plan(CONQUER, replace(patient(), enrolled_at=closes - timedelta(hours=1)), [], RAND)
    assert not in_time.not_offered


def test_intrathecal_diary_days_1_to_7_arm_a_only() -> None:
    dose = date(2026, 3, 10)
    events = [EventFact("it-1", "intrathecal_dose", dose, 1)]
    tps = plan(CONQUER, patient("A"), events, RAND)
    diaries = [tp for tp in tps if tp.kind == "diary"]
    assert [tp.key for tp in diaries] == [f"diary-{(dose + i * D).isoformat()}" for i in range(1, 8)]
    for i, tp in enumerate(diaries, start=1):
        assert tp.rule_id == "intrathecal_diary" and tp.instruments == ("symptom_diary",)
        assert tp.target_date == tp.window_start == tp.window_end == dose + i * D
        assert tp.grace_end == tp.window_end + D  # diary grace: 1 day
        assert tp.sources[0].day == i and tp.anchor.event_id == "it-1"
    assert [tp.key for tp in plan(CONQUER, patient("B"), events, RAND)] == ["baseline"]


def test_nadir_diary_cycle_days_8_to_15_both_arms() -> None:
    start = date(2026, 3, 4)
    for arm in ("A", "B"):
        diaries = [tp for tp in plan(CONQUER, patient(arm), [cycle(1, start, 1)], RAND) if tp.kind == "diary"]
        assert [tp.target_date for tp in diaries] == [start + i * D for i in range(7, 15)]
        assert {tp.rule_id for tp in diaries} == {"nadir_diary"}


def test_overlapping_diaries_merge_into_one_form_per_local_day() -> None:
    start = date(2026, 3, 4)  # nadir days 11..18 March
    events = [
        cycle(1, start, 1),
        EventFact(20, "intrathecal_dose", date(2026, 3, 9), 1),  # days 10..16 March
        EventFact(21, "intrathecal_dose", date(2026, 3, 12), 2),  # days 13..19 March
    ]
    diaries = [tp for tp in plan(CONQUER, patient("A"), events, RAND) if tp.kind == "diary"]
    days = [tp.target_date for tp in diaries]
    assert days == [date(2026, 3, d) for d in range(10, 20)]  # each day exactly once
    merged = by_key(diaries)["diary-2026-03-13"]
    assert merged.instruments == ("symptom_diary",)
    # primary = earliest anchor (the cycle of 4 March); all sources kept
    assert merged.anchor.event_id == 1 and merged.rule_id == "nadir_diary"
    assert [(s.rule_id, s.anchor.event_id, s.day) for s in merged.sources] == [
        ("nadir_diary", 1, 9),
        ("intrathecal_diary", 20, 4),
        ("intrathecal_diary", 21, 1),
    ]
    assert merged.event_ids == (1, 20, 21)
    only_it = by_key(diaries)["diary-2026-03-10"]
    assert only_it.rule_id == "intrathecal_diary" and len(only_it.sources) == 1


def test_a_shared_diary_day_of_events_on_the_same_date_belongs_to_the_rule_listed_first() -> None:
    # a cycle and a dose given the same day share cycle day 8 = dose day 7 (11 March); with equal
    # anchor dates the schedule's rule order decides the primary source, not the event ids
    start = date(2026, 3, 4)
    events = [cycle(1, start, 1), EventFact(2, "intrathecal_dose", start, 1)]
    shared = by_key(plan(CONQUER, patient("A"), events, RAND))["diary-2026-03-11"]
    assert shared.rule_id == "intrathecal_diary" and shared.anchor.event_id == 2
    assert [(s.rule_id, s.anchor.event_id, s.day) for s in shared.sources] == [
        ("intrathecal_diary", 2, 7),
        ("nadir_diary", 1, 7),
    ]


def test_sources_of_a_merged_day_are_ordered_by_anchor_date_rule_then_event_id() -> None:
    # two doses recorded for the same day (ids 21 and 20) and an earlier cycle share 11..16 March
    events = [
        cycle(1, date(2026, 3, 4), 1),
        EventFact(21, "intrathecal_dose", date(2026, 3, 9), 2),
        EventFact(20, "intrathecal_dose", date(2026, 3, 9), 1),
    ]
    shared = by_key(plan(CONQUER, patient("A"), events, RAND))["diary-2026-03-12"]
    assert [(s.rule_id, s.anchor.event_id) for s in shared.sources] == [
        ("nadir_diary", 1),
        ("intrathecal_diary", 20),
        ("intrathecal_diary", 21),
    ]


def test_progression_day0_window_0_to_7_numbered_by_order() -> None:
    events = [
        EventFact("p2", "progression", date(2026, 6, 1)),
        EventFact("p1", "progression", date(2026, 4, 1)),
    ]
    tps = by_key(plan(CONQUER, patient("B"), events, RAND))
    p1 = tps["prog-1"]
    assert p1.anchor.event_id == "p1" and p1.target_date == date(2026, 4, 1)
    assert (p1.window_start, p1.window_end) == (date(2026, 4, 1), date(2026, 4, 8))
    assert tps["prog-2"].anchor.event_id == "p2"


def test_end_of_treatment_plus_30_window_7() -> None:
    eot = date(2026, 5, 1)
    tps = by_key(plan(CONQUER, patient(), [EventFact(9, "end_of_treatment", eot)], eot))
    tp = tps["eot"]
    assert tp.target_date == eot + 30 * D
    assert (tp.window_start, tp.window_end) == (eot + 23 * D, eot + 37 * D)


def test_follow_up_every_28_days_bounded_by_lookahead() -> None:
    eot = date(2026, 5, 1)
    events = [EventFact(9, "end_of_treatment", eot)]
    today = eot + 200 * D
    fus = [tp for tp in plan(CONQUER, patient(), events, today) if tp.rule_id == "follow_up"]
    assert [tp.key for tp in fus] == [f"fu-{k}" for k in range(1, len(fus) + 1)]
    assert [tp.target_date for tp in fus] == [eot + (58 + 28 * i) * D for i in range(len(fus))]
    assert fus[-1].window_start <= today + CONQUER.lookahead_days * D
    assert fus[-1].window_start + 28 * D > today + CONQUER.lookahead_days * D  # next one not yet
    assert fus[0].instruments == ("eortc_qlq_c30", "eortc_qlq_bn20")
    # earlier "today" gives a prefix of the same list
    early = [tp for tp in plan(CONQUER, patient(), events, eot) if tp.rule_id == "follow_up"]
    assert early == fus[: len(early)]


@pytest.mark.parametrize("status", ["died", "withdrawn", "lost"])
def test_after_end_follow_up_stops_and_later_timepoints_are_not_expected(status: str) -> None:
    eot = date(2026, 5, 1)
    end = eot + 100 * D  # after fu-1 (day 58) and fu-2 (day 86), before fu-3 (day 114)
    events = [EventFact(9, "end_of_treatment", eot), cycle(1, eot - 10 * D, 6)]
    p = patient(end_status=status, end_date=end)
    later = plan(CONQUER, p, events, end + 400 * D)
    tps = by_key(later)
    assert tps["fu-1"].expected and tps["fu-2"].expected and tps["eot"].expected
    assert not tps["fu-3"].expected and tps["fu-3"].not_expected_reason == status
    # the horizon freezes at the end date: a dead patient accrues no new rows
    assert later == plan(CONQUER, p, events, end + 5 * D)
    assert max(int(k[3:]) for k in tps if k.startswith("fu-")) <= 4
    # every kept timepoint is expected iff its target is on or before the end date and it was not
    # still open (grace included) on that date
    for tp in later:
        assert tp.expected == (tp.target_date <= end and not tp.window_start <= end <= tp.grace_end)
        assert tp.not_expected_reason == (None if tp.expected else status)


def test_event_anchored_timepoint_after_death_kept_not_expected() -> None:
    start = date(2026, 3, 4)
    death = start + 10 * D
    tps = by_key(plan(CONQUER, patient("A", end_status="died", end_date=death), [cycle(1, start, 1)], death))
    assert tps["sys-c1"].expected is False and tps["sys-c1"].not_expected_reason == "died"
    nadir = [tp for tp in tps.values() if tp.kind == "diary"]
    # days 7 and 8 had closed; 9 (its grace day) and 10 were still open on the day of death; 11..14 after it
    assert [tp.expected for tp in nadir] == [True] * 2 + [False] * 6
    assert tps["baseline"].expected


def _with_open_forms_at_end(value: str):
    text = (
        (SCHEDULES_DIR / "conquer.yaml")
        .read_text()
        .replace("open_forms_at_end: not_expected", f"open_forms_at_end: {value}")
    )
    import yaml

    return parse_schedule(yaml.safe_load(text), source="test")


@pytest.mark.parametrize("status", ["died", "withdrawn", "lost"])
def test_a_form_open_on_the_end_date_is_not_expected(status: str) -> None:
    end = RAND + 2 * D  # baseline: window RAND-7 .. RAND, grace to RAND+3
    (tp,) = plan(CONQUER, patient(end_status=status, end_date=end), [], end)
    assert CONQUER.open_forms_at_end == "not_expected"
    assert not tp.expected and tp.not_expected_reason == status
    (closed,) = plan(CONQUER, patient(end_status=status, end_date=RAND + 4 * D), [], RAND + 4 * D)
    assert closed.expected  # its window had closed: a miss stays a miss


def test_the_protocol_may_keep_open_forms_for_staff_entry() -> None:
    staff_entry = _with_open_forms_at_end("staff_entry")
    assert staff_entry.open_forms_at_end == "staff_entry"
    (tp,) = plan(staff_entry, patient(end_status="died", end_date=RAND + 2 * D), [], RAND + 2 * D)
    assert tp.expected and tp.not_expected_reason is None
    start = date(2026, 3, 4)
    tps = by_key(
        plan(staff_entry, patient("A", end_status="died", end_date=start + 10 * D), [cycle(1, start, 1)], start)
    )
    assert [tp.expected for tp in tps.values() if tp.kind == "diary"] == [True] * 4 + [False] * 4


def test_open_forms_at_end_takes_known_values_only() -> None:
    with pytest.raises(ValueError, match="open_forms_at_end"):
        _with_open_forms_at_end("whatever")


def test_fixed_calendar_identical_in_both_arms() -> None:
    events = [
        cycle(1, date(2026, 3, 4), 1),
        EventFact(2, "intrathecal_dose", date(2026, 3, 5), 1),
        EventFact(3, "progression", date(2026, 5, 5)),
    ]
    today = RAND + 300 * D
    a = plan(CALENDAR, patient("A"), events, today)
    b = plan(CALENDAR, patient("B"), [], today)
    assert a == b
    cal = [tp for tp in a if tp.rule_id == "calendar"]
    assert [tp.key for tp in cal] == [f"cal-{k}" for k in range(1, len(cal) + 1)]
    assert [tp.target_date for tp in cal] == [RAND + 21 * k * D for k in range(1, len(cal) + 1)]
    assert {tp.anchor.kind for tp in a} == {"randomization"}


def test_study_end_and_max_count_stop_recurring_rules() -> None:
    schedule = parse_schedule(
        {
            "schema_version": 1,
            "id": "tiny",
            "arms": ["A", "B"],
            "lookahead_days": 10_000,
            "study_end_days": 100,
            "rules": [
                {
                    "id": "cal",
                    "kind": "questionnaire",
                    "anchor": "randomization",
                    "arms": "both",
                    "key": "cal-{k}",
                    "instruments": ["eq5d5l"],
                    "target": {"offset_days": 21},
                    "window": {"before": 3, "after": 3},
                    "repeat": {"every_days": 21},
                },
                {
                    "id": "few",
                    "kind": "questionnaire",
                    "anchor": "randomization",
                    "arms": ["B"],
                    "key": "few-{k}",
                    "instruments": ["eq5d5l"],
                    "target": {"offset_days": 7},
                    "window": {"before": 0, "after": 0},
                    "repeat": {"every_days": 7, "max_count": 2},
                },
            ],
        },
        source="inline",
    )
    a = [tp.key for tp in plan(schedule, patient("A"), [], RAND)]
    assert a == ["cal-1", "cal-2", "cal-3", "cal-4"]  # day 105 > study end (100)
    b = [tp.key for tp in plan(schedule, patient("B"), [], RAND)]
    assert b.count("few-1") == 1 and "few-3" not in b


def test_a_recurring_timepoint_targeted_on_the_study_end_day_is_still_planned() -> None:
    on_the_day = plan(_tiny(10_000, 105), patient("A"), [], RAND)
    assert [(tp.key, tp.target_date) for tp in on_the_day][-1] == ("cal-5", RAND + 105 * D)
    assert [tp.key for tp in plan(_tiny(10_000, 104), patient("A"), [], RAND)][-1] == "cal-4"


def test_plan_is_deterministic_and_sorted() -> None:
    events = [
        cycle(1, date(2026, 3, 4), 1),
        cycle(2, date(2026, 3, 27), 2, 28),
        EventFact(3, "intrathecal_dose", date(2026, 3, 6), 1),
        EventFact(4, "intrathecal_dose", date(2026, 3, 10), 2),
        EventFact(5, "progression", date(2026, 5, 1)),
        EventFact(6, "end_of_treatment", date(2026, 5, 2)),
    ]
    today = date(2026, 9, 1)
    expected = plan(CONQUER, patient(), events, today)
    rng = random.Random(1)
    for _ in range(10):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert plan(CONQUER, patient(), shuffled, today) == expected
    order = [(tp.target_date, tp.window_start, tp.key) for tp in expected]
    assert order == sorted(order)


def test_same_day_events_without_numbers_are_numbered_by_id_whatever_the_input_order() -> None:
    events = [EventFact(7, "progression", date(2026, 4, 1)), EventFact(3, "progression", date(2026, 4, 1))]
    for given in (events, events[::-1]):
        tps = by_key(plan(CONQUER, patient(), given, RAND))
        assert (tps["prog-1"].anchor.event_id, tps["prog-2"].anchor.event_id) == (3, 7)
    mixed = [EventFact("imported-1", "progression", date(2026, 4, 1)), EventFact(9, "progression", date(2026, 4, 1))]
    for given in (mixed, mixed[::-1]):  # integer ids (the database's) before text ids (imports)
        tps = by_key(plan(CONQUER, patient(), given, RAND))
        assert (tps["prog-1"].anchor.event_id, tps["prog-2"].anchor.event_id) == (9, "imported-1")


def test_data_errors_raise_planning_error() -> None:
    eots = [
        EventFact(1, "end_of_treatment", date(2026, 5, 1)),
        EventFact(2, "end_of_treatment", date(2026, 6, 1)),
    ]
    with pytest.raises(
        PlanningError, match=r"'eot' produced twice .*\); check for duplicate event numbers or repeated one-off events$"
    ):
        plan(CONQUER, patient(), eots, RAND)
    with pytest.raises(PlanningError, match="'sys-c1' produced twice"):
        plan(CONQUER, patient(), [cycle(1, date(2026, 3, 4), 1), cycle(2, date(2026, 4, 4), 1)], RAND)
    with pytest.raises(PlanningError, match="event id 1 appears twice"):
        plan(CONQUER, patient(), [cycle(1, date(2026, 3, 4), 1), cycle(1, date(2026, 4, 4), 2)], RAND)
    with pytest.raises(PlanningError, match=re.escape("arm 'C' is not in schedule 'conquer_default' (A, B)")):
        plan(CONQUER, patient("C"), [], RAND)


def test_a_key_collision_names_both_rules_and_their_anchors() -> None:
    rule = {"kind": "questionnaire", "arms": "both", "instruments": ["eq5d5l"], "window": {"before": 0, "after": 7}}
    schedule = parse_schedule(
        {
            "schema_version": 1,
            "id": "clash",
            "arms": ["A", "B"],
            "lookahead_days": 35,
            "rules": [
                {**rule, "id": "screen", "anchor": "randomization", "key": "visit-1", "target": {"offset_days": 0}},
                {**rule, "id": "prog", "anchor": "progression", "key": "visit-{n}", "target": {"offset_days": 0}},
            ],
        },
        source="inline",
    )
    message = (
        "timepoint key 'visit-1' produced twice (rule 'screen' from randomization on 2026-03-02, "
        "rule 'prog' from progression 'p1' on 2026-04-01)"
    )
    with pytest.raises(PlanningError, match=re.escape(message)):
        plan(schedule, patient(), [EventFact("p1", "progression", date(2026, 4, 1))], RAND)


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="unknown IANA timezone"):
        patient(tz="Mars/Olympus")
    with pytest.raises(ValueError, match="^end_status and end_date must be given together$"):
        patient(end_status="died")
    with pytest.raises(ValueError, match="end_status"):
        patient(end_status="moved", end_date=RAND)
    with pytest.raises(ValueError, match="kind"):
        EventFact(1, "surgery", RAND)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cycle_length_days"):
        cycle(1, RAND, 1, 0)
    with pytest.raises(ValueError, match="number must be a positive integer, got True"):
        cycle(1, RAND, True)  # type: ignore[arg-type]  # a yes/no read from a file is not cycle 1


def test_late_entered_dose_marks_days_whose_grace_ended_as_not_offered() -> None:
    dose = date(2026, 3, 10)
    recorded = datetime(2026, 3, 15, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, 5 days after the dose
    events = [EventFact("it-1", "intrathecal_dose", dose, 1, recorded_at=recorded)]
    diaries = {
        (tp.target_date - dose).days: tp for tp in plan(CONQUER, patient("A"), events, RAND) if tp.kind == "diary"
    }
    assert [d for d, tp in sorted(diaries.items()) if tp.not_offered] == [1, 2, 3]
    assert all(tp.grace_closes_at <= recorded for d, tp in diaries.items() if d <= 3)
    assert diaries[4].grace_closes_at > recorded  # late but still accepted: offered
    # recorded in time (or without a recorded time): everything offered
    on_time = [EventFact("it-1", "intrathecal_dose", dose, 1, recorded_at=datetime(2026, 3, 10, 4, tzinfo=UTC))]
    assert not any(tp.not_offered for tp in plan(CONQUER, patient("A"), on_time, RAND))
    assert not any(tp.not_offered for tp in plan(CONQUER, patient("A"), [replace(events[0], recorded_at=None)], RAND))


def test_a_dose_recorded_as_a_days_grace_closes_leaves_that_day_not_offered() -> None:
    dose = date(2026, 3, 10)  # day 1 = 11 March, grace to 12 March: closes 13 March 00:00 +08:00
    recorded = datetime(2026, 3, 12, 16, 0, tzinfo=UTC)
    diaries = [
        tp
        for tp in plan(CONQUER, patient("A"), [EventFact(1, "intrathecal_dose", dose, 1, recorded_at=recorded)], RAND)
        if tp.kind == "diary"
    ]
    assert diaries[0].grace_closes_at == recorded and diaries[0].not_offered
    assert not any(tp.not_offered for tp in diaries[1:])
    on_time = replace(EventFact(1, "intrathecal_dose", dose, 1), recorded_at=recorded - timedelta(microseconds=1))
    assert not any(tp.not_offered for tp in plan(CONQUER, patient("A"), [on_time], RAND))


def test_merged_diary_day_is_offered_when_any_of_its_events_was_recorded_in_time() -> None:
    start = date(2026, 3, 4)  # nadir days 11..18 March, recorded in time
    cyc = replace(cycle(1, start, 1), recorded_at=datetime(2026, 3, 4, 4, tzinfo=UTC))
    late = EventFact("it-1", "intrathecal_dose", date(2026, 3, 14), 1, recorded_at=datetime(2026, 3, 25, tzinfo=UTC))
    tps = by_key(plan(CONQUER, patient("A"), [cyc, late], RAND))  # dose days 15..21 March
    assert [k for k in sorted(tps) if tps[k].not_offered] == [f"diary-2026-03-{d}" for d in (19, 20, 21)]
    assert len(tps["diary-2026-03-18"].sources) == 2  # a nadir day too: offered


# --------------------------------------------------------------------------- plan_ahead


def _tiny(lookahead: int, study_end: int | None) -> Schedule:
    rule = {
        "kind": "questionnaire",
        "anchor": "randomization",
        "instruments": ["eq5d5l"],
        "window": {"before": 3, "after": 3},
    }
    return parse_schedule(
        {
            "schema_version": 1,
            "id": "tiny",
            "arms": ["A", "B"],
            "lookahead_days": lookahead,
            "study_end_days": study_end,
            "rules": [
                {**rule, "id": "cal", "arms": "both", "key": "cal-{k}", "target": {"offset_days": 21},
                 "repeat": {"every_days": 21}},
                {**rule, "id": "few", "arms": ["B"], "key": "few-{k}", "target": {"offset_days": 7},
                 "repeat": {"every_days": 10, "max_count": 3}},
            ],
        },
        source="inline",
    )  # fmt: skip


EOT = EventFact(9, "end_of_treatment", date(2026, 5, 1))
AHEAD = [
    pytest.param(CONQUER, patient("A"), [EOT], 12, id="conquer-follow-up"),
    pytest.param(CONQUER, patient("B", end_status="died", end_date=date(2026, 9, 20)), [EOT], 5, id="conquer-died"),
    pytest.param(CONQUER, patient("B"), [cycle(1, RAND + D, 1)], 0, id="conquer-no-recurring"),
    pytest.param(CALENDAR, patient("A"), [], 19, id="fixed-calendar"),
    pytest.param(_tiny(10, 200), patient("B"), [], 11, id="study-end-and-max-count"),
    pytest.param(_tiny(0, None), patient("B", end_status="lost", end_date=RAND + 90 * D), [], 7, id="lookahead-0-lost"),
]


@pytest.mark.parametrize(("schedule", "facts", "events", "changes"), AHEAD)
def test_plan_ahead_names_the_day_the_plan_changes_by_itself(
    schedule: Schedule, facts: PatientFacts, events: list[EventFact], changes: int
) -> None:
    """Day by day over a year: the plan changes on exactly the day the day before announced."""
    current = plan_ahead(schedule, facts, events, RAND)
    seen = 0
    for day in (RAND + k * D for k in range(1, 400)):
        later = plan_ahead(schedule, facts, events, day)
        assert later.timepoints == plan(schedule, facts, events, day)
        if later.timepoints != current.timepoints:
            assert current.changes_on == day, f"the plan changed on {day}, announced {current.changes_on}"
            seen += 1
        else:
            assert current.changes_on != day, f"{day} was announced, but nothing changed"
            assert later.changes_on == current.changes_on
        current = later
    assert seen == changes
    if changes:
        assert current.changes_on is None or current.changes_on > RAND + 399 * D


def test_a_window_reaching_the_horizon_on_the_end_date_still_changes_the_plan_that_day() -> None:
    # fu-2 opens on 19 July; with 35 days of lookahead it enters the plan on 14 June, the day the
    # patient is lost to follow-up (kept, not expected); no later window ever comes
    lost = patient("B", end_status="lost", end_date=date(2026, 6, 14))
    ahead = plan_ahead(CONQUER, lost, [EOT], date(2026, 6, 1))
    assert ahead.changes_on == date(2026, 6, 14)
    before = {tp.key for tp in plan(CONQUER, lost, [EOT], date(2026, 6, 13))}
    on_end = by_key(plan(CONQUER, lost, [EOT], date(2026, 6, 14)))
    assert set(on_end) - before == {"fu-2"} and on_end["fu-2"].not_expected_reason == "lost"
    assert plan_ahead(CONQUER, lost, [EOT], date(2026, 6, 14)).changes_on is None
