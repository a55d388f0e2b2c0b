"""Treatment events and patient end status: the facts the schedule hangs on.

Each write is audited with old/new values and followed, in the same transaction, by a
reconcile of the patient's timepoints, so the nurse who records a delayed cycle sees the
moved questionnaire on the next page. Event dates are *actual* administration dates in the
patient's local calendar (CLINICAL.md §1), so a future date is refused. Deleting is soft.
Callers commit.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import Patient, PatientStatusChange, TreatmentEvent
from qol_app.models.trial import EVENT_KINDS, PATIENT_STATUSES
from qol_app.scheduling import Schedule, local_date_of
from qol_app.scheduling.planner import END_STATUSES
from qol_app.scheduling.rules import REPEATABLE_ANCHORS
from qol_app.scheduling.timewindows import zone
from qol_app.services import audit
from qol_app.services.audit import Actor
from qol_app.services.notifications import NO_CONTACT_STATUSES, skip_pending_for_patient
from qol_app.services.sessions import end_all
from qol_app.services.timepoints import ReconcileResult, reconcile_patient

ENTITY = "treatment_event"
EVENT_FIELDS = ["kind", "number", "date", "cycle_length_days", "drug", "deleted_at", "deleted_reason"]
STATUS_FIELDS = ["status", "status_date", "status_reason"]
MAX_CYCLE_LENGTH_DAYS = 120


def _staff_id(actor: Actor) -> int | None:
    return int(actor.id) if actor.type == "staff" and actor.id and actor.id.isdigit() else None


def _local_today(patient: Patient, now: dt.datetime) -> dt.date:
    return local_date_of(now, zone(patient.tz))


#: What a checked date is, and its two messages (one msgid per sentence, so each translates whole).
_DATE_MESSAGES = {
    "event": (
        N_("The event date is an actual date: %(date)s is in the future."),
        N_("The event date %(date)s is before randomization (%(randomized)s)."),
    ),
    "status": (
        N_("The status date is an actual date: %(date)s is in the future."),
        N_("The status date %(date)s is before randomization (%(randomized)s)."),
    ),
}


def _check_date(patient: Patient, date: dt.date, now: dt.datetime, what: str) -> None:
    future, early = _DATE_MESSAGES[what]
    if date > _local_today(patient, now):
        raise ServiceError(future, date=date)
    if date < patient.randomization_date:
        raise ServiceError(early, date=date, randomized=patient.randomization_date)


def _check_cycle_length(kind: str, days: int | None) -> None:
    if days is None:
        return
    if kind != "systemic_cycle":
        raise ServiceError(N_("Only a systemic cycle has a cycle length."))
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_CYCLE_LENGTH_DAYS:
        raise ServiceError(N_("The cycle length must be 1 to %(max)s days."), max=MAX_CYCLE_LENGTH_DAYS)


def _live_events(patient_id: int, kind: str):
    return select(TreatmentEvent).where(
        TreatmentEvent.patient_id == patient_id, TreatmentEvent.kind == kind, TreatmentEvent.deleted_at.is_(None)
    )


def _values(event: TreatmentEvent) -> dict:
    return {f: getattr(event, f) for f in EVENT_FIELDS if getattr(event, f) is not None}


def _require_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise ServiceError(N_("A reason is required."))
    return reason.strip()[:255]


def record_event(
    session: Session,
    actor: Actor,
    patient: Patient,
    *,
    kind: str,
    date: dt.date,
    now: dt.datetime,
    number: int | None = None,
    cycle_length_days: int | None = None,
    drug: str | None = None,
    schedule: Schedule | None = None,
) -> tuple[TreatmentEvent, ReconcileResult]:
    """Record an administered treatment or clinical event and reconcile the schedule.

    Repeatable kinds (cycles, doses, progressions) get the next free ``number`` when none is
    given: stored numbers keep timepoint keys stable when an earlier event is entered late.
    A duplicate number, or a second end of treatment, is a ValueError.
    """
    if kind not in EVENT_KINDS:
        raise ServiceError(N_("Unknown event kind %(kind)s."), kind=kind)
    _check_date(patient, date, now, "event")
    _check_cycle_length(kind, cycle_length_days)
    if kind in REPEATABLE_ANCHORS:
        if number is None:
            number = (
                session.scalar(
                    select(func.max(TreatmentEvent.number)).where(
                        TreatmentEvent.patient_id == patient.id,
                        TreatmentEvent.kind == kind,
                        TreatmentEvent.deleted_at.is_(None),
                    )
                )
                or 0
            ) + 1
        elif number < 1:
            raise ServiceError(N_("The event number starts at 1."))
        elif session.scalar(_live_events(patient.id, kind).where(TreatmentEvent.number == number)):
            raise ServiceError(
                N_("%(kind)s %(number)s is already recorded for this patient."), kind=kind, number=number
            )
    elif session.scalar(_live_events(patient.id, kind)) is not None:
        raise ServiceError(
            N_("%(kind)s is already recorded for this patient; change or delete that one instead."), kind=kind
        )
    event = TreatmentEvent(
        patient_id=patient.id,
        kind=kind,
        number=number,
        date=date,
        cycle_length_days=cycle_length_days,
        drug=drug,
        created_at=now,
        created_by=_staff_id(actor),
    )
    session.add(event)
    session.flush()
    audit.record(
        session,
        actor,
        "record_event",
        entity_type=ENTITY,
        entity_id=event.id,
        patient_id=patient.id,
        site_id=patient.site_id,
        new=_values(event),
        now=now,
    )
    result = reconcile_patient(session, actor, patient, now, reason=f"{kind} recorded", schedule=schedule)
    return event, result


def move_event(
    session: Session,
    actor: Actor,
    event: TreatmentEvent,
    *,
    now: dt.datetime,
    reason: str,
    date: dt.date | None = None,
    cycle_length_days: int | None = None,
    schedule: Schedule | None = None,
) -> ReconcileResult:
    """Correct an event's date and/or cycle length (reason required); its timepoints follow.

    Started or completed forms stay where they are (see :mod:`qol_app.services.timepoints`).
    """
    reason = _require_reason(reason)
    if event.deleted_at is not None:
        raise ServiceError(N_("A deleted event cannot be changed."))
    patient = event.patient
    new_values: dict = {}
    if date is not None:
        _check_date(patient, date, now, "event")
        new_values["date"] = date
    if cycle_length_days is not None:
        _check_cycle_length(event.kind, cycle_length_days)
        new_values["cycle_length_days"] = cycle_length_days
    old, new = audit.changes(event, list(new_values), new_values)
    if not new:
        return ReconcileResult()
    for name, value in new.items():
        setattr(event, name, value)
    session.flush()
    audit.record(
        session,
        actor,
        "move_event",
        entity_type=ENTITY,
        entity_id=event.id,
        patient_id=patient.id,
        site_id=patient.site_id,
        old=old,
        new=new,
        reason=reason,
        now=now,
    )
    return reconcile_patient(session, actor, patient, now, reason=reason, schedule=schedule)


def delete_event(
    session: Session,
    actor: Actor,
    event: TreatmentEvent,
    *,
    now: dt.datetime,
    reason: str,
    schedule: Schedule | None = None,
) -> ReconcileResult:
    """Soft-delete an event recorded in error (reason required); its unstarted timepoints are
    cancelled with reason ``anchor_event_deleted``, started ones are kept."""
    reason = _require_reason(reason)
    if event.deleted_at is not None:
        raise ServiceError(N_("This event is already deleted."))
    patient = event.patient
    event.deleted_at = now
    event.deleted_reason = reason
    session.flush()
    audit.record(
        session,
        actor,
        "delete_event",
        entity_type=ENTITY,
        entity_id=event.id,
        patient_id=patient.id,
        site_id=patient.site_id,
        old={"deleted_at": None},
        new={"deleted_at": now, "deleted_reason": reason},
        reason=reason,
        now=now,
    )
    return reconcile_patient(session, actor, patient, now, reason=reason, schedule=schedule)


def set_patient_status(
    session: Session,
    actor: Actor,
    patient: Patient,
    status: str,
    *,
    now: dt.datetime,
    reason: str,
    status_date: dt.date | None = None,
    schedule: Schedule | None = None,
) -> ReconcileResult:
    """Record death, withdrawal or loss to follow-up (with its date), or a return to active.

    The status governs the patient's access, in the same transaction: an end status ends every
    open session of the patient (sign-in then shows only a kind message), timepoints targeted
    after the date become *not expected* with the status as reason (never missed), and so do
    forms still open on that date, unless the protocol's ``open_forms_at_end`` is
    ``staff_entry`` (then staff may still enter them). Queued reminders to a patient who died or
    withdrew are skipped. Setting ``active`` again (a retracted record) reactivates the forms.
    Reason required. Anything else that lets a patient in (reminder links, a remembered device)
    must check ``patient.status`` when it is used.

    Every change is kept in the status history (``PatientStatusChange``, with the time it was
    recorded) so an export as of an earlier time shows the status known then. A recorded death
    stays recorded: setting another status is refused (``ServiceError``); a death recorded in
    error is corrected with :func:`correct_death`.
    """
    reason = _require_reason(reason)
    if status not in PATIENT_STATUSES:
        raise ServiceError(N_("Unknown patient status %(status)s."), status=status)
    if patient.status == "died" and status != "died":
        raise ServiceError(N_("A recorded death stays recorded. Correct the death record if it was entered in error."))
    return _record_status(session, actor, patient, status, status_date, reason, "set_status", now, schedule)


def correct_death(
    session: Session,
    actor: Actor,
    patient: Patient,
    *,
    now: dt.datetime,
    reason: str,
    status: str = "active",
    status_date: dt.date | None = None,
    death_date: dt.date | None = None,
    schedule: Schedule | None = None,
) -> ReconcileResult:
    """Correct a recorded death, as its own audited act (``correct_death``; CLINICAL.md §2).

    Either the date was wrong (``status="died"`` with the right ``death_date``), or the patient
    did not die: ``status`` is then what is true instead (``active``, ``withdrawn`` or ``lost``
    with its ``status_date``). The death stays in the status history with when it was recorded,
    so an export as of an earlier time still shows it. Reason required; ``ServiceError`` when
    the patient is not recorded as dead.
    """
    reason = _require_reason(reason)
    if patient.status != "died":
        raise ServiceError(N_("Only a recorded death can be corrected."))
    if status == "died":
        status_date = death_date
    if status not in PATIENT_STATUSES:
        raise ServiceError(N_("Unknown patient status %(status)s."), status=status)
    return _record_status(
        session, actor, patient, status, status_date, reason, "correct_death", now, schedule, "correction"
    )


def _record_status(
    session: Session,
    actor: Actor,
    patient: Patient,
    status: str,
    status_date: dt.date | None,
    reason: str,
    action: str,
    now: dt.datetime,
    schedule: Schedule | None,
    kind: str = "set",
) -> ReconcileResult:
    """The checks and change both ``set_patient_status`` and ``correct_death`` make once the
    status is known: an end status needs its date (checked), any other drops it; nothing changes
    when only the reason would."""
    if status in END_STATUSES:
        if status_date is None:
            raise ServiceError(N_("The date of this status is required."))
        _check_date(patient, status_date, now, "status")
    else:
        status_date = None
    new_values = {"status": status, "status_date": status_date, "status_reason": reason}
    old, new = audit.changes(patient, STATUS_FIELDS, new_values)
    if not (set(new) - {"status_reason"}):
        return ReconcileResult()
    return _change_status(session, actor, patient, new_values, old, new, action, now=now, schedule=schedule, kind=kind)


def _change_status(
    session: Session,
    actor: Actor,
    patient: Patient,
    new_values: dict,
    old: dict,
    new: dict,
    action: str,
    *,
    now: dt.datetime,
    schedule: Schedule | None,
    kind: str = "set",
) -> ReconcileResult:
    """Write a status (patient row, history row, audit event), then what follows from it."""
    status = new_values["status"]
    for name, value in new_values.items():
        setattr(patient, name, value)
    session.add(
        PatientStatusChange(
            patient_id=patient.id,
            status=status,
            status_date=new_values["status_date"],
            reason=new_values["status_reason"],
            kind=kind,
            recorded_at=now,
            recorded_by=f"{actor.type}:{actor.id}" if actor.id else actor.type,
        )
    )
    session.flush()
    audit.record(
        session,
        actor,
        action,
        patient,
        patient_id=patient.id,
        site_id=patient.site_id,
        old=old,
        new=new,
        reason=new_values["status_reason"],
        now=now,
    )
    if status in END_STATUSES:
        end_all(session, "patient", patient.id, status, now)
    result = reconcile_patient(session, actor, patient, now, reason=f"patient {status}", schedule=schedule)
    if status in NO_CONTACT_STATUSES:  # a lost patient may still answer a reminder
        skip_pending_for_patient(session, patient.id, f"patient {status}")
    return result
