"""The one seam between staff views and the treatment-event/timepoint services.

Events and statuses change the schedule; those services reconcile timepoints synchronously
and audit each change. Keeping the calls here means a signature change touches one file.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from qol_app.models import Patient, TreatmentEvent
from qol_app.services import timepoints, treatment_events
from qol_app.services.audit import Actor


def plan_timepoints(session: Session, actor: Actor, patient: Patient, now: dt.datetime) -> None:
    """Create the timepoints a new patient already has (baseline, from randomization)."""
    timepoints.reconcile_patient(session, actor, patient, now, reason="enrolled")


def record_event(
    session: Session,
    actor: Actor,
    patient: Patient,
    *,
    kind: str,
    date: dt.date,
    number: int | None,
    cycle_length_days: int | None,
    drug: str | None,
    now: dt.datetime,
) -> TreatmentEvent:
    """New data (no reason needed); the staff member is taken from ``actor``."""
    event, _result = treatment_events.record_event(
        session,
        actor,
        patient,
        kind=kind,
        date=date,
        number=number,
        cycle_length_days=cycle_length_days,
        drug=drug,
        now=now,
    )
    return event


def move_event(
    session: Session,
    actor: Actor,
    event: TreatmentEvent,
    *,
    date: dt.date,
    cycle_length_days: int | None,
    reason: str,
    now: dt.datetime,
) -> None:
    treatment_events.move_event(
        session, actor, event, date=date, cycle_length_days=cycle_length_days, reason=reason, now=now
    )


def delete_event(session: Session, actor: Actor, event: TreatmentEvent, *, reason: str, now: dt.datetime) -> None:
    treatment_events.delete_event(session, actor, event, reason=reason, now=now)


def set_status(
    session: Session,
    actor: Actor,
    patient: Patient,
    status: str,
    date: dt.date | None,
    reason: str,
    now: dt.datetime,
    *,
    correct_death: bool = False,
) -> None:
    """A new status; ``correct_death``: the correction of a death recorded in error instead."""
    if correct_death:
        treatment_events.correct_death(
            session, actor, patient, status=status, status_date=date, death_date=date, reason=reason, now=now
        )
        return
    treatment_events.set_patient_status(session, actor, patient, status, status_date=date, reason=reason, now=now)


def rule_order() -> list[str]:
    """Rule ids in the configured schedule's order (compliance rows follow the protocol)."""
    return [rule.id for rule in timepoints.configured_schedule().rules]
