"""Signing in with the personal link and PIN, throttled in the database.

The failure counter lives on the patient row and is bumped with one atomic UPDATE, so every
worker and process sees the same count; a lock-out holds until ``pin_locked_until``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import update
from sqlalchemy.orm import Session

from qol_app.models import Patient
from qol_app.passwords import check_secret
from qol_app.services import audit
from qol_app.services.audit import Actor


@dataclasses.dataclass(frozen=True)
class Outcome:
    ok: bool
    locked_until: dt.datetime | None = None
    tries_left: int | None = None


def locked_until(patient: Patient, now: dt.datetime) -> dt.datetime | None:
    until = patient.pin_locked_until
    return until if until is not None and now < until else None


def check_pin(
    session: Session,
    actor: Actor,
    patient: Patient,
    pin: str | None,
    now: dt.datetime,
    *,
    max_failures: int,
    lock_minutes: int,
) -> Outcome:
    """Check the PIN (if the patient has one) and count failures; a success resets the count.

    After ``max_failures`` wrong PINs in a row the patient is locked out for ``lock_minutes``
    (the count restarts then). While locked, even the right PIN is refused.
    """
    until = locked_until(patient, now)
    if until is not None:
        return Outcome(False, locked_until=until)
    if patient.pin_hash is None or check_secret(patient.pin_hash, pin or ""):
        if patient.pin_failures or patient.pin_locked_until is not None:
            session.execute(
                update(Patient)
                .where(Patient.id == patient.id)
                .values(pin_failures=0, pin_locked_until=None)
                .execution_options(synchronize_session=False)
            )
            session.refresh(patient)
        return Outcome(True)
    failures = session.execute(
        update(Patient)
        .where(Patient.id == patient.id)
        .values(pin_failures=Patient.pin_failures + 1)
        .returning(Patient.pin_failures)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    common = {"patient_id": patient.id, "site_id": patient.site_id, "now": now}
    if failures >= max_failures:
        until = now + dt.timedelta(minutes=lock_minutes)
        session.execute(
            update(Patient)
            .where(Patient.id == patient.id)
            .values(pin_failures=0, pin_locked_until=until)
            .execution_options(synchronize_session=False)
        )
        session.refresh(patient)
        audit.record(session, actor, "pin_locked", patient, new={"failures": failures, "locked_until": until}, **common)
        return Outcome(False, locked_until=until)
    session.refresh(patient)
    audit.record(session, actor, "pin_failed", patient, new={"failures": failures}, **common)
    return Outcome(False, tries_left=max_failures - failures)
