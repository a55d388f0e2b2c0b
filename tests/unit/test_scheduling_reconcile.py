"""diff(): delayed and deleted events, deaths, reactivation, idempotency."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from qol_app.scheduling import (
    SCHEDULES_DIR,
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
