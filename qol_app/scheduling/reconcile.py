"""Stored timepoints vs a fresh plan -> the minimal set of changes (pure).

The services layer loads a patient's timepoint rows, calls :func:`diff` with a
fresh :func:`~qol_app.scheduling.planner.plan`, applies the result in one
transaction and writes one audit entry per change. Rules:

* Keys are the identity. Never delete a row: cancel it (with a reason).
* A started or completed timepoint is never moved, cancelled or marked not
  expected; the answers decide its fate (completed / partial).
* Not started + dates, window, grace, instruments or source events changed
  -> ``to_move`` (e.g. a cycle given late because of low counts).
* Stored but no longer planned -> ``to_cancel`` with ``anchor_event_deleted``
  when none of its source events exists any more, else ``no_longer_planned``.
  Exception: a patient who has ended (pass ``patient``) and a target after
  the end date -> ``to_mark_not_expected``; CLINICAL.md §2 wants those kept as
  not expected, and a late death record can leave such rows behind the
  planner's frozen horizon.
* Planned not expected but stored expected -> ``to_mark_not_expected``.
* Cancelled (or not-expected) rows that are planned and expected again ->
  ``to_reactivate`` (an event re-entered, a death record retracted).
* Amendments (pass ``amendment``): a row that an earlier schedule version created and whose
  window opens before the amendment's effective date is the past: never moved, cancelled or
  re-planned (its values, status and reason stay); only a patient's end status still marks it
  not expected, by the planner's rule on the row's own dates (targeted after the end date, or
  still open on it with ``end_open_forms``), and undoing that status makes it expected again
  (``to_restore``). A planned timepoint opening before that date is not created when every event
  behind it was recorded before the amendment was applied (the old version planned those
  days). Rows of an earlier version that the new plan drops are cancelled ``schedule_amended``.
* Idempotent: ``diff(apply_plan(existing, d), planned)`` has no changes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Final, Literal

from .planner import END_STATUSES, EventId, PatientFacts, PlannedTimepoint

__all__ = [
    "CANCEL_REASONS",
    "Amendment",
    "Cancel",
    "ExistingTimepoint",
    "MarkNotExpected",
    "ReconcilePlan",
    "Update",
    "apply_plan",
    "diff",
]

CancelReason = Literal["anchor_event_deleted", "no_longer_planned", "schedule_amended"]
CANCEL_REASONS: Final[tuple[str, ...]] = ("anchor_event_deleted", "no_longer_planned", "schedule_amended")


@dataclass(frozen=True, slots=True)
class Amendment:
    """The schedule version in force since ``effective`` (applied at ``applied_at``)."""

    version: str
    effective: date
    applied_at: datetime

    def is_past(self, row: ExistingTimepoint) -> bool:
        """A row an earlier version created, whose window opens before the effective date."""
        return row.window_start < self.effective and row.schedule_version != self.version

    def skips(self, tp: PlannedTimepoint) -> bool:
        """A new timepoint the amendment must not create: it opens before the effective date and
        every event behind it was known (recorded) when the amendment was applied."""
        return tp.window_start < self.effective and all(
            a.recorded_at is None or a.recorded_at < self.applied_at for a in tp.source_anchors
        )


@dataclass(frozen=True, slots=True)
class ExistingTimepoint:
    """What reconcile needs from a stored timepoint row.

    ``event_ids`` are the source event ids stored with the row; ``None`` means
    "not tracked" (then they are neither compared nor used for the reason).
    """

    key: str
    target_date: date
    window_start: date
    window_end: date
    grace_end: date
    instruments: tuple[str, ...]
    started: bool = False
    completed: bool = False
    cancelled: bool = False
    not_expected_reason: str | None = None
    event_ids: tuple[EventId, ...] | None = None
    cancel_reason: str | None = None
    schedule_version: str | None = None

    @classmethod
    def from_planned(cls, tp: PlannedTimepoint, schedule_version: str | None = None) -> ExistingTimepoint:
        """The row a service would insert for ``tp`` (not started, not cancelled)."""
        return cls(
            schedule_version=schedule_version,
            key=tp.key,
            target_date=tp.target_date,
            window_start=tp.window_start,
            window_end=tp.window_end,
            grace_end=tp.grace_end,
            instruments=tp.instruments,
            not_expected_reason=None if tp.expected else tp.not_expected_reason,
            event_ids=tp.event_ids,
        )


@dataclass(frozen=True, slots=True)
class Update:
    """Overwrite ``existing``'s dates/instruments/sources/expectedness with ``planned``."""

    existing: ExistingTimepoint
    planned: PlannedTimepoint


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel ``existing`` (keep the row) for ``reason``."""

    existing: ExistingTimepoint
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class MarkNotExpected:
    """Mark ``existing`` not expected; ``planned`` (if any) carries new values too."""

    existing: ExistingTimepoint
    reason: str
    planned: PlannedTimepoint | None


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    """Changes to apply, each list ordered by target date then key."""

    to_create: tuple[PlannedTimepoint, ...] = ()
    to_move: tuple[Update, ...] = ()
    to_cancel: tuple[Cancel, ...] = ()
    to_mark_not_expected: tuple[MarkNotExpected, ...] = ()
    to_reactivate: tuple[Update, ...] = ()
    #: rows of the past (under an amendment) an end status made not expected that it no longer
    #: covers: expected again, with their own values
    to_restore: tuple[ExistingTimepoint, ...] = ()
    untouched: tuple[ExistingTimepoint, ...] = ()

    @property
    def has_changes(self) -> bool:
        """False when applying this plan would change nothing."""
        return bool(
            self.to_create
            or self.to_move
            or self.to_cancel
            or self.to_mark_not_expected
            or self.to_reactivate
            or self.to_restore
        )


def _same_values(existing: ExistingTimepoint, planned: PlannedTimepoint) -> bool:
    if (
        existing.target_date != planned.target_date
        or existing.window_start != planned.window_start
        or existing.window_end != planned.window_end
        or existing.grace_end != planned.grace_end
        or tuple(existing.instruments) != planned.instruments
    ):
        return False
    return existing.event_ids is None or tuple(existing.event_ids) == planned.event_ids


def diff(
    existing: Sequence[ExistingTimepoint],
    planned: Sequence[PlannedTimepoint],
    *,
    patient: PatientFacts | None = None,
    live_event_ids: Collection[EventId] | None = None,
    amendment: Amendment | None = None,
    end_open_forms: bool = True,
) -> ReconcilePlan:
    """Changes that make ``existing`` match ``planned`` (see module doc).

    ``live_event_ids`` are the patient's current event ids; by default they
    are inferred from ``planned`` (every event of a scheduled kind yields at
    least one planned timepoint for the arms the rule covers). ``end_open_forms``
    is the planner's rule for forms still open on an end-status date (the schedule's
    ``open_forms_at_end: not_expected``); it matters only for the past under ``amendment``.
    """
    by_key: dict[str, ExistingTimepoint] = {}
    for stored in existing:
        if stored.key in by_key:
            raise ValueError(f"existing timepoints contain key {stored.key!r} twice")
        by_key[stored.key] = stored
    planned_keys: set[str] = set()
    for tp in planned:
        if tp.key in planned_keys:
            raise ValueError(f"planned timepoints contain key {tp.key!r} twice")
        planned_keys.add(tp.key)
    live = (
        set(live_event_ids) if live_event_ids is not None else {event_id for tp in planned for event_id in tp.event_ids}
    )

    create: list[PlannedTimepoint] = []
    move: list[Update] = []
    cancel: list[Cancel] = []
    mark: list[MarkNotExpected] = []
    reactivate: list[Update] = []
    restore: list[ExistingTimepoint] = []
    untouched: list[ExistingTimepoint] = []

    ended = patient is not None and patient.end_status is not None and patient.end_date is not None
    for tp in sorted(planned, key=lambda p: (p.target_date, p.key)):
        row = by_key.get(tp.key)
        if row is None:
            if amendment is None or not amendment.skips(tp):
                create.append(tp)
        elif amendment is not None and amendment.is_past(row):
            _keep_past(row, patient, end_open_forms, mark, restore, untouched)
        elif row.started or row.completed:
            untouched.append(row)  # answers exist: never touched by planning
        elif row.cancelled:
            reactivate.append(Update(row, tp))
        elif not tp.expected:
            if row.not_expected_reason != tp.not_expected_reason:
                mark.append(MarkNotExpected(row, tp.not_expected_reason or "", tp))
            elif not _same_values(row, tp):
                move.append(Update(row, tp))
            else:
                untouched.append(row)
        elif row.not_expected_reason is not None:
            reactivate.append(Update(row, tp))
        elif not _same_values(row, tp):
            move.append(Update(row, tp))
        else:
            untouched.append(row)

    stale = sorted(
        (row for key, row in by_key.items() if key not in planned_keys),
        key=lambda r: (r.target_date, r.key),
    )
    for old in stale:
        if amendment is not None and amendment.is_past(old):
            _keep_past(old, patient, end_open_forms, mark, restore, untouched)
        elif old.cancelled or old.started or old.completed or old.not_expected_reason is not None:
            untouched.append(old)
        elif ended and old.target_date > patient.end_date:  # type: ignore[union-attr,operator]
            mark.append(MarkNotExpected(old, patient.end_status, None))  # type: ignore[union-attr,arg-type]
        elif old.event_ids and not any(event_id in live for event_id in old.event_ids):
            cancel.append(Cancel(old, "anchor_event_deleted"))
        elif amendment is not None and old.schedule_version != amendment.version:
            cancel.append(Cancel(old, "schedule_amended"))
        else:
            cancel.append(Cancel(old, "no_longer_planned"))

    return ReconcilePlan(
        to_create=tuple(create),
        to_move=tuple(move),
        to_cancel=tuple(cancel),
        to_mark_not_expected=tuple(mark),
        to_reactivate=tuple(reactivate),
        to_restore=tuple(restore),
        untouched=tuple(untouched),
    )


def _end_status_over(row: ExistingTimepoint, patient: PatientFacts | None, end_open_forms: bool) -> str | None:
    """The patient's end status if it covers ``row``, by the planner's rule (``planner._finish``) on
    the row's own dates: targeted after the end date, or (``end_open_forms``) still open on it."""
    if patient is None or patient.end_status is None or patient.end_date is None:
        return None
    end = patient.end_date
    if row.target_date > end or (end_open_forms and row.window_start <= end <= row.grace_end):
        return patient.end_status
    return None


def _keep_past(
    row: ExistingTimepoint,
    patient: PatientFacts | None,
    end_open_forms: bool,
    mark: list[MarkNotExpected],
    restore: list[ExistingTimepoint],
    untouched: list[ExistingTimepoint],
) -> None:
    """The past under an amendment: kept as it is, but following the patient's end status while
    it is not answered, closed or begun (without ``patient``, nothing is known of that status)."""
    reason = row.not_expected_reason
    ended_by = _end_status_over(row, patient, end_open_forms)
    if patient is None or row.cancelled or row.started or row.completed:
        untouched.append(row)
    elif ended_by is not None and (reason is None or (reason in END_STATUSES and reason != ended_by)):
        mark.append(MarkNotExpected(row, ended_by, None))
    elif ended_by is None and reason in END_STATUSES:
        restore.append(row)  # the end status behind it was undone, or its date moved
    else:
        untouched.append(row)


def apply_plan(existing: Sequence[ExistingTimepoint], changes: ReconcilePlan) -> list[ExistingTimepoint]:
    """Reference semantics of applying ``changes`` (what the service must do to rows).

    Returns the new row set sorted by key; used by tests to prove idempotency.
    """
    rows = {row.key: row for row in existing}
    for tp in changes.to_create:
        rows[tp.key] = ExistingTimepoint.from_planned(tp)
    for update in (*changes.to_move, *changes.to_reactivate):
        rows[update.existing.key] = ExistingTimepoint.from_planned(update.planned)
    for cancel in changes.to_cancel:
        rows[cancel.existing.key] = replace(cancel.existing, cancelled=True, cancel_reason=cancel.reason)
    for mark in changes.to_mark_not_expected:
        if mark.planned is not None:
            rows[mark.existing.key] = ExistingTimepoint.from_planned(mark.planned)
        else:
            rows[mark.existing.key] = replace(mark.existing, not_expected_reason=mark.reason)
    for row in changes.to_restore:
        rows[row.key] = replace(row, not_expected_reason=None)
    return [rows[key] for key in sorted(rows)]
