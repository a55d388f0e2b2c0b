"""diff(): delayed and deleted events, deaths, reactivation, idempotency."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qol_app.scheduling import (
    SCHEDULES_DIR,
    Amendment,
    Cancel,
    EventFact,
    ExistingTimepoint,
    MarkNotExpected,
    PatientFacts,
    PlannedTimepoint,
    Update,
    apply_plan,
    diff,
    load_schedule,
    plan,
)

CONQUER = load_schedule(SCHEDULES_DIR / "conquer.yaml")
RAND = date(2026, 3, 2)
D = timedelta(days=1)
A = PatientFacts("A", RAND, "Asia/Shanghai")
C1 = EventFact(1, "systemic_cycle", date(2026, 3, 4), 1, 21)
C2 = EventFact(2, "systemic_cycle", date(2026, 3, 25), 2, 21)
IT = EventFact(3, "intrathecal_dose", date(2026, 3, 5), 1)
EOT = EventFact(4, "end_of_treatment", date(2026, 4, 20))
TODAY = date(2026, 3, 30)


def synced(events: list[EventFact], patient: PatientFacts = A, today: date = TODAY) -> list[ExistingTimepoint]:
    """Rows as the service would have stored them after reconciling ``events``."""
    rows = apply_plan([], diff([], plan(CONQUER, patient, events, today)))
    assert not diff(rows, plan(CONQUER, patient, events, today)).has_changes
    return rows


def keys(
    items: Iterable[PlannedTimepoint | ExistingTimepoint | Update | Cancel | MarkNotExpected],
) -> list[str]:
    return [
        item.key if isinstance(item, (PlannedTimepoint, ExistingTimepoint)) else item.existing.key for item in items
    ]


def mark(rows: list[ExistingTimepoint], key: str, **changes: object) -> list[ExistingTimepoint]:
    return [replace(r, **changes) if r.key == key else r for r in rows]  # type: ignore[arg-type]


def test_first_sync_creates_everything_then_nothing() -> None:
    planned = plan(CONQUER, A, [C1, IT], TODAY)
    d = diff([], planned)
    assert keys(d.to_create) == [tp.key for tp in planned]
    assert not (d.to_move or d.to_cancel or d.to_mark_not_expected or d.to_reactivate or d.untouched)
    rows = apply_plan([], d)
    again = diff(rows, planned)
    assert not again.has_changes and len(again.untouched) == len(planned)


def test_delayed_cycle_moves_its_timepoints() -> None:
    rows = synced([C1, C2])
    delayed = replace(C2, date=C2.date + 7 * D)  # low counts: given a week late
    d = diff(rows, plan(CONQUER, A, [C1, delayed], TODAY))
    moved = {u.existing.key: u for u in d.to_move}
    assert set(moved) == {"sys-c1", "sys-c2"}
    assert moved["sys-c2"].existing.target_date == date(2026, 4, 14)  # cycle day 21 = start + 20
    assert moved["sys-c2"].planned.target_date == date(2026, 4, 21)
    assert moved["sys-c2"].planned.window_start == date(2026, 4, 18)
    # cycle 1's window was cut at the day before cycle 2; with cycle 2 a week later it is whole
    assert moved["sys-c1"].existing.window_end == date(2026, 3, 24)
    assert moved["sys-c1"].planned.window_end == date(2026, 3, 27)
    # nadir diaries are keyed by day: old days that no longer apply are cancelled,
    # new days created, shared days untouched
    assert keys(d.to_cancel) == [f"diary-2026-04-0{i}" for i in range(1, 8)]
    assert {c.reason for c in d.to_cancel} == {"no_longer_planned"}
    assert keys(d.to_create) == [f"diary-2026-04-{i:02d}" for i in range(9, 16)]
    assert not diff(apply_plan(rows, d), plan(CONQUER, A, [C1, delayed], TODAY)).has_changes


def test_shorter_cycle_length_moves_target() -> None:
    rows = synced([C1])
    d = diff(rows, plan(CONQUER, A, [replace(C1, cycle_length_days=14)], TODAY))
    assert [(u.existing.key, u.planned.target_date) for u in d.to_move] == [("sys-c1", date(2026, 3, 17))]


def test_started_or_completed_timepoints_are_never_moved_or_cancelled() -> None:
    rows = mark(synced([C1, C2]), "sys-c2", started=True)
    rows = mark(rows, "diary-2026-04-01", completed=True)
    delayed = replace(C2, date=C2.date + 7 * D)
    d = diff(rows, plan(CONQUER, A, [C1, delayed], TODAY))
    assert "sys-c2" not in keys(d.to_move) and "sys-c2" in keys(d.untouched)
    assert "diary-2026-04-01" not in keys(d.to_cancel) and "diary-2026-04-01" in keys(d.untouched)
    # deleting the event does not cancel them either
    d = diff(rows, plan(CONQUER, A, [C1], TODAY))
    assert {"sys-c2", "diary-2026-04-01"} <= set(keys(d.untouched))
    assert {"sys-c2", "diary-2026-04-01"}.isdisjoint(keys(d.to_cancel))


def test_deleted_event_cancels_with_reason_and_reentry_reactivates() -> None:
    rows = synced([C1, C2, IT])
    d = diff(rows, plan(CONQUER, A, [C1, IT], TODAY))
    cancelled = {c.existing.key: c.reason for c in d.to_cancel}
    assert cancelled["sys-c2"] == "anchor_event_deleted"
    assert {k for k in cancelled if k.startswith("diary-")} == {f"diary-2026-04-{i:02d}" for i in range(1, 9)}
    assert set(cancelled.values()) == {"anchor_event_deleted"}
    assert not d.to_create
    assert keys(d.to_move) == ["sys-c1"]  # no next administration any more: its window is whole again
    after = apply_plan(rows, d)
    assert all(r.cancelled for r in after if r.key in cancelled)
    assert not diff(after, plan(CONQUER, A, [C1, IT], TODAY)).has_changes
    # the nurse re-enters the cycle: same keys come back
    back = diff(after, plan(CONQUER, A, [C1, C2, IT], TODAY))
    assert set(keys(back.to_reactivate)) == set(cancelled)
    restored = apply_plan(after, back)
    assert not any(r.cancelled for r in restored)
    assert not diff(restored, plan(CONQUER, A, [C1, C2, IT], TODAY)).has_changes


def test_merged_diary_losing_one_source_is_updated_not_cancelled() -> None:
    rows = synced([C1, IT])  # IT days 6..12 March, nadir days 11..18 March
    d = diff(rows, plan(CONQUER, A, [C1], TODAY))
    assert keys(d.to_cancel) == [f"diary-2026-03-{i:02d}" for i in range(6, 11)]
    assert {c.reason for c in d.to_cancel} == {"anchor_event_deleted"}
    moved = {u.existing.key: u for u in d.to_move}
    assert set(moved) == {"diary-2026-03-11", "diary-2026-03-12"}  # sources shrink to the cycle
    assert moved["diary-2026-03-11"].planned.event_ids == (1,)


def test_death_marks_later_timepoints_not_expected_and_retraction_reactivates() -> None:
    events = [C1, EOT]
    today = date(2026, 8, 1)
    rows = synced(events, today=today)
    died = replace(A, end_status="died", end_date=date(2026, 5, 10))
    d = diff(rows, plan(CONQUER, died, events, today), patient=died)
    marked = {m.existing.key: m.reason for m in d.to_mark_not_expected}
    assert marked and set(marked.values()) == {"died"}
    assert "eot" in marked  # target 20 May > 10 May
    assert "sys-c1" not in marked and "baseline" not in marked
    assert not d.to_cancel  # late death record: stale follow-ups are not cancelled
    after = apply_plan(rows, d)
    assert not diff(after, plan(CONQUER, died, events, today), patient=died).has_changes
    # death recorded in error: everything expected again
    undo = diff(after, plan(CONQUER, A, events, today))
    assert set(keys(undo.to_reactivate)) == set(marked)
    assert not diff(apply_plan(after, undo), plan(CONQUER, A, events, today)).has_changes


def test_a_not_expected_row_whose_cycle_moved_gets_the_new_dates_and_stays_not_expected() -> None:
    died = replace(A, end_status="died", end_date=date(2026, 3, 15))
    rows = synced([C1, C2], patient=died)
    assert {r.key: r.not_expected_reason for r in rows}["sys-c2"] == "died"
    delayed = replace(C2, date=C2.date + 7 * D)
    planned = plan(CONQUER, died, [C1, delayed], TODAY)
    d = diff(rows, planned, patient=died)
    moved = {u.existing.key: u.planned for u in d.to_move}
    assert moved["sys-c2"].target_date == date(2026, 4, 21) and not d.to_mark_not_expected
    after = {r.key: r for r in apply_plan(rows, d)}
    assert (after["sys-c2"].target_date, after["sys-c2"].not_expected_reason) == (date(2026, 4, 21), "died")
    assert not diff(list(after.values()), planned, patient=died).has_changes


def test_a_stale_row_targeted_on_the_end_date_is_cancelled_not_marked_not_expected() -> None:
    rows = synced([C1, C2])
    died = replace(A, end_status="died", end_date=date(2026, 4, 14))  # sys-c2's target day
    d = diff(rows, plan(CONQUER, died, [C1], TODAY), patient=died)  # cycle 2 deleted as well
    assert ("sys-c2", "anchor_event_deleted") in [(c.existing.key, c.reason) for c in d.to_cancel]
    assert not d.to_mark_not_expected
    later = replace(died, end_date=date(2026, 4, 13))  # the day before: after the end, not expected
    d = diff(rows, plan(CONQUER, later, [C1], TODAY), patient=later)
    assert [(m.existing.key, m.reason) for m in d.to_mark_not_expected] == [("sys-c2", "died")]


def test_without_patient_stale_followups_are_cancelled() -> None:
    events = [C1, EOT]
    today = date(2026, 12, 1)
    rows = synced(events, today=today)
    died = replace(A, end_status="died", end_date=date(2026, 5, 10))
    d = diff(rows, plan(CONQUER, died, events, today))
    assert d.to_cancel and {c.reason for c in d.to_cancel} == {"no_longer_planned"}
    assert all(c.existing.key.startswith("fu-") for c in d.to_cancel)


def test_explicit_live_event_ids_decide_the_reason() -> None:
    rows = synced([C1, C2])
    planned = plan(CONQUER, A, [C1], TODAY)
    d = diff(rows, planned, live_event_ids={1, 2})  # event exists but no longer scheduled
    assert {c.reason for c in d.to_cancel} == {"no_longer_planned"}


@pytest.mark.parametrize(
    "stored",
    [
        {"target_date": date(2026, 3, 23)},
        {"window_start": date(2026, 3, 20)},
        {"window_end": date(2026, 3, 23)},
        {"grace_end": date(2026, 3, 26)},
        {"instruments": ("eortc_qlq_c30",)},
        {"event_ids": (9,)},
    ],
    ids=lambda stored: next(iter(stored)),
)
def test_a_row_differing_from_the_plan_in_one_value_only_is_moved(stored: dict[str, object]) -> None:
    rows = synced([C1, C2])
    planned = plan(CONQUER, A, [C1, C2], TODAY)
    d = diff(mark(rows, "sys-c1", **stored), planned)
    assert keys(d.to_move) == ["sys-c1"] and not (d.to_create or d.to_cancel or d.to_reactivate)
    assert apply_plan(mark(rows, "sys-c1", **stored), d) == rows


def test_a_key_given_twice_is_refused_naming_the_key() -> None:
    rows = synced([C1])
    planned = plan(CONQUER, A, [C1], TODAY)
    with pytest.raises(ValueError, match="existing timepoints contain key 'sys-c1' twice"):
        diff([*rows, *(r for r in rows if r.key == "sys-c1")], planned)
    with pytest.raises(ValueError, match="planned timepoints contain key 'sys-c1' twice"):
        diff(rows, [*planned, *(tp for tp in planned if tp.key == "sys-c1")])


def test_applying_a_cancel_records_its_reason_on_the_row() -> None:
    rows = synced([C1, C2])
    after = apply_plan(rows, diff(rows, plan(CONQUER, A, [C1], TODAY)))
    assert {r.key: r.cancel_reason for r in after if r.cancelled} == {
        "sys-c2": "anchor_event_deleted",
        **{f"diary-2026-04-0{i}": "anchor_event_deleted" for i in range(1, 9)},
    }


# --------------------------------------------------------------------------- amendments

OLD = CONQUER.version_label
NEW = "conquer_default@3"


def versioned(rows: list[ExistingTimepoint], version: str = OLD) -> list[ExistingTimepoint]:
    return [replace(r, schedule_version=version) for r in rows]


def amendment(effective: date) -> Amendment:
    return Amendment(NEW, effective, datetime(2026, 3, 20, 2, 0, tzinfo=UTC))


def test_amendment_moves_an_earlier_versions_row_whose_window_opens_on_the_effective_date() -> None:
    rows = versioned(synced([C1, C2]))  # sys-c1 opens on 21 March
    delayed = replace(C2, date=C2.date + 7 * D)
    d = diff(rows, plan(CONQUER, A, [C1, delayed], TODAY), amendment=amendment(date(2026, 3, 21)))
    moved = {u.existing.key: u.planned for u in d.to_move}
    assert set(moved) == {"sys-c1", "sys-c2"}  # sys-c1 opens on the effective date: not the past
    assert moved["sys-c1"].window_end == date(2026, 3, 27)
    d = diff(rows, plan(CONQUER, A, [C1, delayed], TODAY), amendment=amendment(date(2026, 3, 22)))
    assert keys(d.to_move) == ["sys-c2"] and "sys-c1" in keys(d.untouched)  # opens before it: the past


@pytest.mark.parametrize(
    ("recorded_at", "before_effective_created"),
    [
        (None, False),  # no recorded time: taken as recorded in time, the old version had it
        (datetime(2026, 3, 20, 1, 59, tzinfo=UTC), False),  # known when the amendment was applied
        (datetime(2026, 3, 20, 2, 0, tzinfo=UTC), True),  # recorded as the amendment was applied
        (datetime(2026, 3, 21, 9, 0, tzinfo=UTC), True),  # recorded later: no version planned it
    ],
)
def test_amendment_creates_days_before_the_effective_date_only_for_events_recorded_after_it(
    recorded_at: datetime | None, before_effective_created: bool
) -> None:
    rows = versioned(synced([C1]))  # nadir diaries 11-18 March
    dose = EventFact(5, "intrathecal_dose", date(2026, 3, 17), 2, recorded_at=recorded_at)  # days 18-24 March
    d = diff(rows, plan(CONQUER, A, [C1, dose], TODAY), amendment=amendment(date(2026, 3, 20)))
    created = keys(d.to_create)
    assert ("diary-2026-03-19" in created) is before_effective_created
    assert [k for k in created if k >= "diary-2026-03-20"] == [f"diary-2026-03-{i}" for i in range(20, 25)]
    assert "diary-2026-03-18" in keys(d.untouched)  # the shared day is the past: kept as it is


def test_amendment_cancels_rows_the_amended_version_created_before_the_effective_date() -> None:
    # A late-entered dose created days before the effective date under the new version; when the
    # dose is deleted those rows are not the past (no earlier version made them): they are cancelled.
    dose = EventFact(5, "intrathecal_dose", date(2026, 3, 17), 2)
    old_rows = versioned(synced([C1]))
    new_rows = [
        ExistingTimepoint.from_planned(tp, NEW)
        for tp in plan(CONQUER, A, [C1, dose], TODAY)
        if tp.key in {"diary-2026-03-19", "diary-2026-03-20"}
    ]
    assert {r.schedule_version for r in new_rows} == {NEW}
    d = diff([*old_rows, *new_rows], plan(CONQUER, A, [C1], TODAY), amendment=amendment(date(2026, 3, 25)))
    assert [(c.existing.key, c.reason) for c in d.to_cancel] == [
        ("diary-2026-03-19", "anchor_event_deleted"),
        ("diary-2026-03-20", "anchor_event_deleted"),
    ]


def test_amendment_past_rows_after_a_death_become_not_expected_unless_answered_or_closed() -> None:
    rows = versioned(synced([C1, C2, IT]))
    rows = mark(rows, "diary-2026-03-16", started=True)
    rows = mark(rows, "diary-2026-03-17", completed=True)
    rows = mark(rows, "diary-2026-03-18", cancelled=True, cancel_reason="no_longer_planned")
    rows = mark(rows, "diary-2026-04-01", not_expected_reason="withdrawn")
    died = replace(A, end_status="died", end_date=date(2026, 3, 15))
    planned = plan(CONQUER, died, [C1, C2, IT], TODAY)
    d = diff(rows, planned, patient=died, amendment=amendment(date(2026, 4, 10)))
    # the past (opens before 10 April, made by the old version) keeps its values (no planned ones)
    # and follows the planner's end-status rule on its own dates: targeted after the death date,
    # or still open on it (the diaries of 14 March, grace to the 15th, and of the 15th); an earlier
    # end status's reason becomes the current one. sys-c2 opens after the effective date: the new
    # plan's values.
    assert [(m.existing.key, m.reason, m.planned is None) for m in d.to_mark_not_expected] == [
        ("diary-2026-03-14", "died", True),
        ("diary-2026-03-15", "died", True),
        ("sys-c1", "died", True),
        *((f"diary-2026-04-0{i}", "died", True) for i in range(1, 9)),
        ("sys-c2", "died", False),
    ]
    assert {"diary-2026-03-13", "diary-2026-03-16", "diary-2026-03-17", "diary-2026-03-18"} <= set(keys(d.untouched))
    after = {r.key: r for r in apply_plan(rows, d)}
    assert after["sys-c1"].not_expected_reason == "died"
    assert after["diary-2026-04-01"].not_expected_reason == "died"
    # the same rows without the amendment (the planner's verdicts) end the same way, except the
    # cancelled one: outside the past, the plan reactivates it
    plain = {r.key: r.not_expected_reason for r in apply_plan(rows, diff(rows, planned, patient=died))}
    assert plain.pop("diary-2026-03-18") == "died" and after["diary-2026-03-18"].cancelled
    assert {k: r.not_expected_reason for k, r in after.items() if k != "diary-2026-03-18"} == plain


def test_amendment_past_rows_open_on_the_end_date_stay_expected_when_the_schedule_says_staff_entry() -> None:
    rows = versioned(synced([C1, C2, IT]))
    died = replace(A, end_status="died", end_date=date(2026, 3, 15))
    planned = plan(CONQUER, died, [C1, C2, IT], TODAY)
    d = diff(rows, planned, patient=died, amendment=amendment(date(2026, 4, 10)), end_open_forms=False)
    marked = keys(d.to_mark_not_expected)
    assert marked[:2] == ["diary-2026-03-16", "diary-2026-03-17"]  # targeted after the death date only
    assert {"diary-2026-03-14", "diary-2026-03-15"} <= set(keys(d.untouched))


def test_amendment_past_rows_become_expected_again_when_the_end_status_is_undone() -> None:
    rows = versioned(synced([C1, C2, IT]))
    died = replace(A, end_status="died", end_date=date(2026, 3, 15))
    d = diff(rows, plan(CONQUER, died, [C1, C2, IT], TODAY), patient=died, amendment=amendment(date(2026, 4, 10)))
    ended = apply_plan(rows, d)
    ended = mark(ended, "diary-2026-04-01", not_expected_reason="not_applicable")  # not an end status
    ended = mark(ended, "diary-2026-04-02", started=True)  # begun: the service settles it apart
    d = diff(ended, plan(CONQUER, A, [C1, C2, IT], TODAY), patient=A, amendment=amendment(date(2026, 4, 10)))
    restored = keys(d.to_restore)
    assert "diary-2026-03-15" in restored and "sys-c1" in restored and "diary-2026-04-08" in restored
    assert not {"diary-2026-04-01", "diary-2026-04-02"} & set(restored)
    assert keys(d.to_reactivate) == ["sys-c2"] and not d.to_mark_not_expected  # sys-c2: not the past
    after = {r.key: r for r in apply_plan(ended, d)}
    old = {r.key: r for r in rows}
    for key in restored:  # expected again, with the old version's own values
        assert after[key] == old[key]
    assert after["diary-2026-04-01"].not_expected_reason == "not_applicable"
    # a death recorded for a later date keeps only what that date covers
    later = replace(A, end_status="died", end_date=date(2026, 4, 5))
    d = diff(ended, plan(CONQUER, later, [C1, C2, IT], TODAY), patient=later, amendment=amendment(date(2026, 4, 10)))
    assert "diary-2026-03-15" in keys(d.to_restore) and "diary-2026-04-06" in keys(d.untouched)
    assert "diary-2026-04-04" in keys(d.untouched)  # open on 5 April (grace): still not expected


def test_amendment_past_rows_of_a_deleted_event_after_a_death_become_not_expected() -> None:
    rows = versioned(synced([C1, C2]))
    died = replace(A, end_status="died", end_date=date(2026, 4, 3))
    d = diff(rows, plan(CONQUER, died, [C1], TODAY), patient=died, amendment=amendment(date(2026, 4, 10)))
    # cycle 2 deleted: its diaries are the past; those after the death date, or open on it (the
    # 2nd, grace to the 3rd, and the 3rd), become not expected
    assert [(m.existing.key, m.reason) for m in d.to_mark_not_expected] == [
        *((f"diary-2026-04-0{i}", "died") for i in range(2, 9)),
        ("sys-c2", "died"),  # not the past (opens 11 April) but after the death date
    ]
    assert "diary-2026-04-01" in keys(d.untouched)
    assert not d.to_cancel


def test_amendment_without_patient_facts_keeps_the_past_as_it_is() -> None:
    rows = versioned(synced([C1, C2]))
    d = diff(rows, plan(CONQUER, A, [C1], TODAY), amendment=amendment(date(2026, 4, 10)))
    assert not d.to_mark_not_expected
    # the past is kept; only rows opening on or after 10 April (sys-c2) can be cancelled
    assert keys(d.to_cancel) == ["sys-c2"]
    assert {f"diary-2026-04-0{i}" for i in range(1, 9)} <= set(keys(d.untouched))


# --------------------------------------------------------------------------- property


event_lists = st.lists(
    st.builds(
        EventFact,
        id=st.integers(1, 8),
        kind=st.sampled_from(["intrathecal_dose", "systemic_cycle", "progression"]),
        date=st.dates(RAND - 5 * D, RAND + 120 * D),
        number=st.none(),
        cycle_length_days=st.sampled_from([None, 14, 21, 28]),
    ),
    max_size=6,
    unique_by=lambda e: e.id,
)


@settings(database=None, max_examples=150, deadline=None)
@given(
    before=event_lists,
    after=event_lists,
    arm=st.sampled_from(["A", "B"]),
    started=st.sets(st.integers(0, 40), max_size=5),
    death=st.none() | st.dates(RAND, RAND + 150 * D),
)
def test_diff_apply_diff_is_empty(
    before: list[EventFact], after: list[EventFact], arm: str, started: set[int], death: date | None
) -> None:
    p = PatientFacts(arm, RAND, "Europe/Berlin")
    rows = apply_plan([], diff([], plan(CONQUER, p, before, TODAY)))
    rows = [replace(r, started=True) if i in started else r for i, r in enumerate(rows)]
    p2 = p if death is None else replace(p, end_status="died", end_date=death)
    planned = plan(CONQUER, p2, after, TODAY)
    d = diff(rows, planned, patient=p2)
    # every row accounted for exactly once
    seen = keys(d.to_move) + keys(d.to_cancel) + keys(d.to_mark_not_expected)
    seen += keys(d.to_reactivate) + keys(d.untouched)
    assert sorted(seen) == sorted(r.key for r in rows)
    assert {r.key for r in rows if r.started} <= set(keys(d.untouched))
    after_rows = apply_plan(rows, d)
    again = diff(after_rows, planned, patient=p2)
    assert not again.has_changes
    assert {r.key for r in after_rows if not r.cancelled} >= {tp.key for tp in planned}


def test_amendment_past_rows_of_a_deleted_event_become_expected_again_when_the_death_is_undone() -> None:
    rows = versioned(synced([C1, C2]))
    died = replace(A, end_status="died", end_date=date(2026, 4, 3))
    ended = apply_plan(
        rows, diff(rows, plan(CONQUER, died, [C1], TODAY), patient=died, amendment=amendment(date(2026, 4, 10)))
    )
    # cycle 2 stays deleted: its diaries are no longer planned, and the past keeps them
    d = diff(ended, plan(CONQUER, A, [C1], TODAY), patient=A, amendment=amendment(date(2026, 4, 10)))
    assert [f"diary-2026-04-0{i}" for i in range(2, 9)] == [
        k for k in keys(d.to_restore) if k.startswith("diary-2026-04")
    ]
    after = {r.key: r for r in apply_plan(ended, d)}
    assert all(after[f"diary-2026-04-0{i}"].not_expected_reason is None for i in range(2, 9))
