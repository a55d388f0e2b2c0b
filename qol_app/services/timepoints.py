"""Timepoint rows: idempotent reconcile against the pure planner, and the status sweep.

Two writers keep ``timepoints`` true:

* :func:`reconcile_patient` recomputes a patient's plan from scratch (schedule + live events +
  end status) and applies :func:`qol_app.scheduling.diff` to the stored rows. It runs
  synchronously after every event or status change, and from the sweep for patients whose
  plan the calendar has changed since (:func:`reconcile_all`): each reconcile stores the day
  the planner names for that (``Plan.changes_on``) as ``Patient.replan_at``.
* :func:`sweep_statuses` moves rows to the status :func:`qol_app.scheduling.derive_status`
  gives at ``now``. It only reads rows that can be due for a change (live statuses past a
  window boundary), so a sweep that changes nothing costs a few index probes.

Contract with the responses service: a timepoint counts as *started* when ``started_at`` is
set or a ``Response`` row exists, and as *submitted* when ``completed_at`` is set. Scheduled,
open and overdue rows catch up in the next sweep; rows already final (missed, partial,
not expected) do not move by themselves, so a service that submits a late or transcribed form
sets the row's status itself in the same transaction (``responses._complete_timepoint``).

Every change writes one audit row (entity ``timepoint``) in the caller's transaction. All
functions flush only; callers commit (long runs take a ``checkpoint`` callable to commit
between batches, keeping the audit chain's head lock short).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self, cast

from sqlalchemy import Row, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import Patient, Response, ScheduleAmendment, Timepoint, TreatmentEvent
from qol_app.scheduling import (
    Amendment,
    EventFact,
    ExistingTimepoint,
    PatientFacts,
    PlannedTimepoint,
    ReconcilePlan,
    Schedule,
    derive_status,
    diff,
    local_date_of,
    local_day_start,
    plan_ahead,
)
from qol_app.scheduling.planner import END_STATUSES, EndStatus
from qol_app.scheduling.status import Status
from qol_app.scheduling.timewindows import zone
from qol_app.services import audit, locks, protocol
from qol_app.services.audit import Actor

log = logging.getLogger(__name__)

SCHEDULER = Actor.system("scheduler")
ENTITY = "timepoint"
#: Statuses the clock alone can still change; final ones move only through data changes.
LIVE_STATUSES = ("scheduled", "open", "overdue")
#: The columns a plan decides; a difference in any of them is a move.
PLANNED_FIELDS = (
    "rule_id",
    "kind",
    "instruments",
    "anchor_event_id",
    "anchor_kind",
    "anchor_number",
    "anchor_date",
    "target_date",
    "window_start",
    "window_end",
    "grace_end",
    "opens_at",
    "closes_at",
    "grace_closes_at",
)
AUDITED_FIELDS = (
    *PLANNED_FIELDS,
    "status",
    "not_expected_reason",
    "cancel_reason",
    "missed_reason",
    "schedule_version",
)
#: Administrative reason of a form whose window (grace included) had closed before the event that
#: creates it was recorded, or that a correction moved into a past the patient never had open
#: (``_Ctx.create``, ``_Ctx.update``): never offered to the patient, so never a patient-related miss.
NOT_OFFERED = "not_offered"

Checkpoint = Callable[[], None]


def _no_checkpoint() -> None:
    return None


# ---- the schedule ---------------------------------------------------------------------------
def configured_schedule(config: Mapping[str, Any] | None = None) -> Schedule:
    """The protocol schedule named by ``SCHEDULE_FILE`` (default ``conquer.yaml``), loaded once.

    Instrument ids are checked against the questionnaire registry, so a typo stops the
    process at start-up instead of producing forms nobody can open.
    """
    return (protocol.current() if config is None else protocol.Protocol(config)).schedule


# ---- amendments ----------------------------------------------------------------------------
def _newest_amendment(session: Session) -> ScheduleAmendment | None:
    return session.scalars(
        select(ScheduleAmendment).order_by(ScheduleAmendment.applied_at.desc(), ScheduleAmendment.id.desc()).limit(1)
    ).first()


def schedule_in_force(session: Session) -> str | None:
    """The schedule version (id@version) the stored plan follows: the newest applied amendment's,
    else the one that created the newest timepoint; None while the database holds neither."""
    row = _newest_amendment(session)
    return row.version_label if row is not None else _planned_version(session)


def _planned_version(session: Session) -> str | None:
    return session.scalars(
        select(Timepoint.schedule_version)
        .where(Timepoint.schedule_version.is_not(None))
        .order_by(Timepoint.id.desc())  # the newest row, found from the end of the primary key
        .limit(1)
    ).first()


def amendment_in_force(session: Session, schedule: Schedule) -> Amendment | None:
    """The newest applied amendment (``qol schedule apply``) as the planner's :class:`Amendment`.

    None when no amendment was ever applied (the schedule file alone decides). A ServiceError when
    the version in force (:func:`schedule_in_force`: the newest amendment's, else the one that
    planned the stored timepoints) is another than ``schedule``'s: planning with a file that is not
    the one in force would rewrite what it planned (the past included, without an amendment's
    effective date), so nothing is planned until ``qol schedule apply`` and ``SCHEDULE_FILE`` agree.
    """
    row = _newest_amendment(session)
    applied = row.version_label if row is not None else _planned_version(session)
    if applied is not None and applied != schedule.version_label:
        raise ServiceError(
            N_("The schedule in force is %(applied)s, but the configured schedule file is %(configured)s."),
            applied=applied,
            configured=schedule.version_label,
        )
    if row is None:
        return None
    return Amendment(row.version_label, row.effective_date, row.applied_at)


# ---- facts from rows ------------------------------------------------------------------------
def patient_facts(patient: Patient, today: dt.date) -> PatientFacts:
    """The planner's view of a patient; an end status without a date counts from ``today``."""
    end_status = cast("EndStatus", patient.status) if patient.status in END_STATUSES else None
    end_date: dt.date | None = None
    if end_status is not None:
        end_date = patient.status_date
        if end_date is None:
            log.warning("patient %s is %s without a date; treating the end as %s", patient.id, end_status, today)
            end_date = today
    return PatientFacts(
        arm=patient.arm,
        randomization_date=patient.randomization_date,
        timezone=patient.tz,
        end_status=end_status,
        end_date=end_date,
        enrolled_at=patient.created_at,
    )


def event_facts(events: Iterable[TreatmentEvent]) -> list[EventFact]:
    """Live events as the planner sees them; ``recorded_at`` (when staff entered the event) decides
    which timepoints were never offered (CLINICAL.md §2, late entry)."""
    return [
        EventFact(e.id, e.kind, e.date, e.number, e.cycle_length_days, recorded_at=e.created_at)  # type: ignore[arg-type]
        for e in events
        if e.deleted_at is None
    ]


def _existing(row: Timepoint, has_response: bool) -> ExistingTimepoint:
    # Only the primary anchor event is stored, so source events are "not tracked" for diff();
    # anchor changes are caught by comparing PLANNED_FIELDS instead (see _apply).
    return ExistingTimepoint(
        key=row.key,
        target_date=row.target_date,
        window_start=row.window_start,
        window_end=row.window_end,
        grace_end=row.grace_end,
        instruments=tuple(row.instruments),
        started=has_response or row.started_at is not None,
        completed=row.completed_at is not None or row.status == "completed",
        cancelled=row.status == "cancelled",
        not_expected_reason=row.not_expected_reason,
        event_ids=None,
        cancel_reason=row.cancel_reason,
        schedule_version=row.schedule_version,
    )


def _planned_values(tp: PlannedTimepoint) -> dict[str, Any]:
    event_id = tp.anchor.event_id
    return {
        "rule_id": tp.rule_id,
        "kind": tp.kind,
        "instruments": list(tp.instruments),
        "anchor_event_id": int(event_id) if event_id is not None else None,
        "anchor_kind": tp.anchor.kind,
        "anchor_number": tp.anchor.number,
        "anchor_date": tp.anchor.date,
        "target_date": tp.target_date,
        "window_start": tp.window_start,
        "window_end": tp.window_end,
        "grace_end": tp.grace_end,
        "opens_at": tp.opens_at,
        "closes_at": tp.closes_at,
        "grace_closes_at": tp.grace_closes_at,
    }


# ---- reconcile ------------------------------------------------------------------------------
@dataclasses.dataclass
class ReconcileResult:
    """What one reconcile changed (all zero when the rows already matched the plan)."""

    created: int = 0
    moved: int = 0
    cancelled: int = 0
    not_expected: int = 0
    reactivated: int = 0

    @property
    def changed(self) -> int:
        return self.created + self.moved + self.cancelled + self.not_expected + self.reactivated

    def __iadd__(self, other: ReconcileResult) -> Self:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
        return self


@dataclasses.dataclass
class Preview:
    """A patient's reconcile worked out but not applied (:func:`preview_patient`)."""

    changes: ReconcilePlan
    rows: list[Timepoint]
    planned: list[PlannedTimepoint]
    with_responses: set[int]
    live_ids: set[int]
    #: When the calendar alone next changes the plan (UTC), None: never (``Patient.replan_at``).
    replan_at: dt.datetime | None


def preview_patient(
    session: Session,
    patient: Patient,
    now: dt.datetime,
    schedule: Schedule,
    amendment: Amendment | None,
) -> Preview:
    """What :func:`reconcile_patient` would change for ``patient`` at ``now``; writes nothing."""
    tz = zone(patient.tz)
    today = local_date_of(now, tz)
    events = session.scalars(
        select(TreatmentEvent).where(TreatmentEvent.patient_id == patient.id, TreatmentEvent.deleted_at.is_(None))
    ).all()
    facts = patient_facts(patient, today)
    ahead = plan_ahead(schedule, facts, event_facts(events), today)
    planned = ahead.timepoints
    rows = list(session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id)).all())
    with_responses = set(
        session.scalars(select(Response.timepoint_id).where(Response.patient_id == patient.id).distinct())
    )
    existing = [_existing(row, row.id in with_responses) for row in rows]
    live_ids = {e.id for e in events}
    changes = diff(
        existing,
        planned,
        patient=facts,
        live_event_ids=live_ids,
        amendment=amendment,
        end_open_forms=schedule.open_forms_at_end == "not_expected",
    )
    replan_at = None if ahead.changes_on is None else local_day_start(ahead.changes_on, tz)
    return Preview(changes, rows, planned, with_responses, live_ids, replan_at)


def reconcile_patient(
    session: Session,
    actor: Actor,
    patient: Patient,
    now: dt.datetime,
    *,
    reason: str | None = None,
    schedule: Schedule | None = None,
    amendment: Amendment | None | bool = True,
) -> ReconcileResult:
    """Make the patient's timepoint rows match a fresh plan; idempotent.

    Creates, moves, cancels (never deletes), marks not expected and reactivates rows, one
    audit row each, with ``reason`` (e.g. the nurse's reason for moving a cycle) attached, and
    stores when the calendar next changes the plan (``Patient.replan_at``, not audited: it is
    derived, like the status sweep's bookkeeping).
    Started or completed rows are never touched, nor (under an amendment) rows of an earlier
    schedule version whose window opens before its effective date. ``amendment``: True (default)
    looks up :func:`amendment_in_force`. New rows store ``schedule.version_label``. A row
    inserted meanwhile by a concurrent reconcile (unique patient_id + key) counts as already
    done. Raises :class:`~qol_app.scheduling.PlanningError` (a ValueError) when the events are
    inconsistent, e.g. two end-of-treatment events.
    """
    schedule = schedule or configured_schedule()
    if amendment is True:
        amendment = amendment_in_force(session, schedule)
    # Serialise reconciles of one patient (PostgreSQL row lock; SQLite has one writer anyway).
    session.execute(select(Patient.id).where(Patient.id == patient.id).with_for_update())
    p = preview_patient(session, patient, now, schedule, amendment or None)
    ctx = _Ctx(session, actor, patient, now, reason, p.with_responses, schedule.version_label)
    result = _apply(ctx, p.changes, p.rows, p.planned, p.live_ids, amendment or None)
    _settle_started(ctx, p.rows, p.planned, result)
    if patient.replan_at != p.replan_at:
        patient.replan_at = p.replan_at
        session.flush()
    return result


def _settle_started(ctx: _Ctx, rows: list[Timepoint], planned: list[PlannedTimepoint], result: ReconcileResult) -> None:
    """Started, unsent forms follow the patient's end status too (the plan leaves started rows alone).

    A form the patient began but can no longer send (died, withdrew or lost while it was still
    open) becomes *not expected* with the status as its reason; its saved answers stay. Undoing
    the status (back to active) makes it expected again, in the state the clock gives it.
    """
    planned_by_key = {tp.key: tp for tp in planned}
    for row in rows:
        started = row.started_at is not None or row.id in ctx.with_responses
        if not started or row.completed_at is not None or row.status in ("completed", "cancelled"):
            continue
        tp = planned_by_key.get(row.key)
        if tp is None:
            continue
        if not tp.expected and row.not_expected_reason is None and row.status in LIVE_STATUSES:
            ctx.set_state(row, "not_expected", status="not_expected", not_expected_reason=tp.not_expected_reason)
            result.not_expected += 1
        elif tp.expected and row.not_expected_reason in END_STATUSES:
            status = derive_status(row, ctx.now, submitted=False, started=True, not_expected_reason=None)
            ctx.set_state(row, "reactivate", status=status, not_expected_reason=None)
            result.reactivated += 1


def _apply(ctx: _Ctx, changes: ReconcilePlan, rows, planned, live_ids, amendment: Amendment | None) -> ReconcileResult:
    result = ReconcileResult()
    by_key = {row.key: row for row in rows}

    for tp in changes.to_create:
        if ctx.create(tp):
            result.created += 1
    for item in changes.to_move:
        ctx.update(by_key[item.existing.key], item.planned, "move")
        result.moved += 1
    for item in changes.to_reactivate:
        ctx.update(by_key[item.existing.key], item.planned, "reactivate", reactivate=True)
        result.reactivated += 1
    for cancel in changes.to_cancel:
        row = by_key[cancel.existing.key]
        why = cancel.reason
        if why == "no_longer_planned" and row.anchor_event_id is not None and row.anchor_event_id not in live_ids:
            why = "anchor_event_deleted"  # diff cannot tell: we store only the primary anchor
        ctx.set_state(row, "cancel", status="cancelled", cancel_reason=why)
        result.cancelled += 1
    for mark in changes.to_mark_not_expected:
        row = by_key[mark.existing.key]
        if mark.planned is not None:
            ctx.update(row, mark.planned, "not_expected")
        else:
            ctx.set_state(row, "not_expected", status="not_expected", not_expected_reason=mark.reason)
        result.not_expected += 1
    for kept in changes.to_restore:  # the past under an amendment, its end status undone
        row = by_key[kept.key]
        status = derive_status(row, ctx.now, submitted=False, started=False, not_expected_reason=None)
        ctx.set_state(row, "reactivate", status=status, not_expected_reason=None)
        result.reactivated += 1
    # diff() compares dates, instruments and (not tracked here) source events; the stored
    # anchor and UTC instants can still differ (an event re-entered with the same date, a
    # patient's timezone corrected): refresh those too, never on started/completed rows nor on
    # the past an amendment keeps (an earlier version's rows, with that version's dates).
    planned_by_key = {tp.key: tp for tp in planned}
    for kept in changes.untouched:
        row = by_key[kept.key]
        fresh = planned_by_key.get(kept.key)
        if fresh is None or kept.started or kept.completed or kept.cancelled:
            continue
        if amendment is not None and amendment.is_past(kept):
            continue
        if any(getattr(row, f) != v for f, v in _planned_values(fresh).items()):
            ctx.update(row, fresh, "move")
            result.moved += 1
    return result


class _Ctx:
    """The shared arguments of one reconcile's writes."""

    def __init__(self, session, actor, patient, now, reason, with_responses, schedule_version=None) -> None:
        self.schedule_version = schedule_version
        self.session = session
        self.actor = actor
        self.patient = patient
        self.now = now
        self.reason = reason
        self.with_responses = with_responses

    def _derive(self, row: Timepoint) -> str:
        return derive_status(
            row,
            self.now,
            submitted=row.completed_at is not None,
            started=row.started_at is not None or row.id in self.with_responses,
            not_expected_reason=row.not_expected_reason,
        )

    def _audit(self, action: str, row: Timepoint, old: dict[str, Any] | None, new: dict[str, Any], why=None) -> None:
        audit.record(
            self.session,
            self.actor,
            action,
            entity_type=ENTITY,
            entity_id=row.id,
            patient_id=row.patient_id,
            site_id=self.patient.site_id,
            old=old,
            new={"key": row.key, **new},
            reason=why or self.reason,
            now=self.now,
        )

    def create(self, tp: PlannedTimepoint) -> bool:
        row = Timepoint(
            patient_id=self.patient.id,
            key=tp.key,
            created_at=self.now,
            status_changed_at=self.now,
            not_expected_reason=None if tp.expected else tp.not_expected_reason,
            schedule_version=self.schedule_version,
            **_planned_values(tp),
        )
        row.status = derive_status(
            row, self.now, submitted=False, started=False, not_expected_reason=row.not_expected_reason
        )
        # Never offered: the event was recorded late (the plan says so), or the row is created only
        # now with its window already closed (e.g. an event date corrected to an earlier day).
        if (tp.not_offered or row.grace_closes_at <= self.now) and row.status == "missed":
            row.missed_reason = NOT_OFFERED
        try:
            with self.session.begin_nested():
                self.session.add(row)
                self.session.flush()
        except IntegrityError:
            log.info("timepoint %s/%s was created concurrently; skipping", self.patient.id, tp.key)
            return False
        self._audit("create", row, None, {f: getattr(row, f) for f in AUDITED_FIELDS if getattr(row, f) is not None})
        return True

    def update(self, row: Timepoint, tp: PlannedTimepoint, action: str, *, reactivate: bool = False) -> None:
        values = _planned_values(tp)
        values["not_expected_reason"] = None if tp.expected else tp.not_expected_reason
        if reactivate:
            values["cancel_reason"] = None
        before = {f: getattr(row, f) for f in AUDITED_FIELDS}
        offered = self._offered(row, tp)
        for name, value in values.items():
            setattr(row, name, value)
        new_status = self._derive(row)
        if new_status != row.status:
            row.status = new_status
            row.status_changed_at = self.now
        never_offered = not offered and row.grace_closes_at <= self.now
        if never_offered and row.status == "missed" and row.missed_reason is None:
            row.missed_reason = NOT_OFFERED
        elif row.missed_reason == NOT_OFFERED and not (never_offered and row.status == "missed"):
            row.missed_reason = None  # offered after all (e.g. moved into the future): the nurse list asks
        old, new = audit.changes(_Snapshot(before), list(AUDITED_FIELDS), {f: getattr(row, f) for f in AUDITED_FIELDS})
        self.session.flush()
        self._audit(action, row, old, new)

    def _offered(self, row: Timepoint, tp: PlannedTimepoint) -> bool:
        """Was the patient ever offered ``row`` on a day of its new window ``tp``? Only while the
        row existed, was live (not cancelled or not expected) and had its old window open: a
        window moved wholly into that past was never offered (CLINICAL.md §2, late entry)."""
        live_until = row.status_changed_at if row.status in ("cancelled", "not_expected") else self.now
        if row.missed_reason == NOT_OFFERED or live_until is None:
            return False
        start = max(row.opens_at, tp.opens_at, row.created_at)
        return start < min(row.grace_closes_at, tp.grace_closes_at, live_until)

    def set_state(self, row: Timepoint, action: str, **values: Any) -> None:
        old, new = audit.changes(row, list(values), values)
        for name, value in values.items():
            setattr(row, name, value)
        row.status_changed_at = self.now
        self.session.flush()
        self._audit(action, row, old, new, why=self.reason or values.get("cancel_reason"))


class _Snapshot:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


# ---- reconcile_all: extend recurring follow-ups ---------------------------------------------
def patients_due_for_reconcile(session: Session, now: dt.datetime) -> list[int]:
    """Patients whose plan the calendar has changed by ``now``: ``replan_at <= now`` (an index probe).

    The planner names that instant at each reconcile (``Plan.changes_on``: a recurring rule's
    next occurrence reaching the lookahead horizon); a patient never reconciled is due at once.
    Everything else a plan depends on changes only through services that reconcile
    synchronously. Under an amendment an occurrence it does not create (opening before its
    effective date) still makes the patient due on its day; that reconcile changes nothing and
    stores the next instant.
    """
    return list(session.scalars(select(Patient.id).where(Patient.replan_at <= now).order_by(Patient.id)))


@dataclasses.dataclass
class ReconcileAllResult:
    patients: int = 0
    changes: ReconcileResult = dataclasses.field(default_factory=ReconcileResult)
    errors: list[str] = dataclasses.field(default_factory=list)


def reconcile_all(
    session: Session,
    now: dt.datetime,
    *,
    actor: Actor = SCHEDULER,
    full: bool = False,
    schedule: Schedule | None = None,
    checkpoint: Checkpoint = _no_checkpoint,
) -> ReconcileAllResult:
    """Reconcile the patients due for it (:func:`patients_due_for_reconcile`), or all (``full``).

    ``full`` is for after a schedule file changed. One patient's planning error is logged and
    reported, not allowed to stop the others; ``checkpoint`` runs after each patient.
    """
    schedule = schedule or configured_schedule()
    result = ReconcileAllResult()
    try:  # a schedule file that is not the one in force plans nobody: say so once, each sweep
        amendment_in_force(session, schedule)
    except ServiceError as exc:
        log.error("reconcile refused: %s", exc)
        result.errors.append(str(exc))
        return result
    ids = (
        session.scalars(select(Patient.id).order_by(Patient.id)).all()
        if full
        else patients_due_for_reconcile(session, now)
    )
    frozen = locks.locked_patient_ids(session, ids, now)  # locked data take no writes, scheduler's included
    for pid in ids:
        if pid in frozen:
            continue
        patient = session.get(Patient, pid)
        if patient is None:
            continue
        try:
            with session.begin_nested():
                result.changes += reconcile_patient(
                    session,
                    actor,
                    patient,
                    now,
                    schedule=schedule,
                    reason="full reconcile" if full else "scheduler sweep",
                )
        except ValueError as exc:  # PlanningError and bad data: report, keep going
            log.error("reconcile of patient %s failed: %s", patient.study_id, exc)
            result.errors.append(f"{patient.study_id}: {exc}")
        result.patients += 1
        checkpoint()
    return result


# ---- the status sweep -----------------------------------------------------------------------
def _started_expr():
    return or_(Timepoint.started_at.is_not(None), exists().where(Response.timepoint_id == Timepoint.id))


def _candidates(session: Session, now: dt.datetime) -> list[Any]:
    """Rows whose derived status may differ from the stored one, found by boundary, not by scan.

    One query per live status, each an equality probe of the (status, grace_closes_at) index
    (the live sets are windows open now or soon; the big final sets are never read), without
    joins so neither SQLite's nor PostgreSQL's planner is tempted into walking every patient.
    """
    cols = (
        Timepoint.id,
        Timepoint.patient_id,
        Timepoint.key,
        Timepoint.status,
        Timepoint.opens_at,
        Timepoint.closes_at,
        Timepoint.grace_closes_at,
        Timepoint.completed_at,
        Timepoint.not_expected_reason,
        _started_expr().label("started"),
    )
    data_changed = or_(Timepoint.completed_at.is_not(None), Timepoint.not_expected_reason.is_not(None))
    boundaries = {
        "scheduled": Timepoint.opens_at <= now,
        "open": Timepoint.closes_at <= now,
        "overdue": Timepoint.grace_closes_at <= now,
    }
    rows: list[Row[Any]] = []
    for status, crossed in boundaries.items():
        rows += session.execute(select(*cols).where(Timepoint.status == status, or_(crossed, data_changed))).all()
    return sorted(rows, key=lambda r: r.id)


def _site_ids(session: Session, patient_ids: set[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    ids = sorted(patient_ids)
    for start in range(0, len(ids), 500):
        found.update(
            (pid, site_id)
            for pid, site_id in session.execute(
                select(Patient.id, Patient.site_id).where(Patient.id.in_(ids[start : start + 500]))
            )
        )
    return found


def sweep_statuses(
    session: Session,
    now: dt.datetime,
    *,
    actor: Actor = SCHEDULER,
    batch: int = 100,
    checkpoint: Checkpoint = _no_checkpoint,
) -> collections.Counter[str]:
    """Move every timepoint whose derived status changed to it; returns counts by new status.

    Patients under a data lock are left as they are (their statuses move again once released).

    Status is a function of stored facts and ``now``, so one sweep after days of downtime
    lands every row in its right state (a window that opened and closed meanwhile goes
    straight to missed). Changes are conditional UPDATEs (``WHERE status = old``, grouped by
    transition, RETURNING the ids that really changed), so two concurrent sweeps change and
    audit a row once. ``checkpoint`` runs after every ``batch`` rows: each audit row holds
    the audit chain's head lock until commit, so small batches keep web writers waiting briefly.
    """
    counts: collections.Counter[str] = collections.Counter()
    changes = []
    for row in _candidates(session, now):
        new = derive_status(
            row,
            now,
            submitted=row.completed_at is not None,
            started=bool(row.started),
            not_expected_reason=row.not_expected_reason,
        )
        if new != row.status:
            changes.append((row, new))
    frozen = locks.locked_patient_ids(session, {row.patient_id for row, _new in changes}, now)
    changes = [(row, new) for row, new in changes if row.patient_id not in frozen]
    sites = _site_ids(session, {row.patient_id for row, _new in changes})
    for start in range(0, len(changes), batch):
        chunk = changes[start : start + batch]
        groups: dict[tuple[str, Status], list[Any]] = collections.defaultdict(list)
        for row, new in chunk:
            groups[(row.status, new)].append(row)
        for (old, new), rows in groups.items():
            done = set(
                session.scalars(
                    update(Timepoint)
                    .where(Timepoint.id.in_([r.id for r in rows]), Timepoint.status == old)
                    .values(status=new, status_changed_at=now)
                    .returning(Timepoint.id)
                )
            )
            for row in rows:
                if row.id not in done:
                    continue  # another sweep got there first
                audit.record(
                    session,
                    actor,
                    "status",
                    entity_type=ENTITY,
                    entity_id=row.id,
                    patient_id=row.patient_id,
                    site_id=sites.get(row.patient_id),
                    old={"status": old},
                    new={"key": row.key, "status": new},
                    now=now,
                )
                counts[new] += 1
        checkpoint()
    return counts
