"""Signing in with the personal link and PIN, throttled in the database.

The attempt counter lives on the patient row. Each attempt is counted by one atomic UPDATE,
committed before the PIN is checked, so every worker and process sees the same count and a burst
cannot test more PINs than allowed; a lock-out holds until ``pin_locked_until``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, case, or_, update
from sqlalchemy.orm import Session

from qol_app.db import rowcount
from qol_app.models import Patient
from qol_app.passwords import check_secret, hash_pin, pin_needs_rehash
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
    commit: Callable[[], None],
) -> Outcome:
    """Check the PIN (if the patient has one), counting the attempt first; a success resets the count.

    The attempt is counted by one atomic UPDATE and committed (``commit``) *before* the PIN is
    looked at, and the decision uses the count that UPDATE returned: so however many requests
    arrive at once, on however many workers, at most ``max_failures`` PINs are ever checked
    before the lock-out. An attempt beyond that allowance is refused without a check, and it
    locks the patient out for ``lock_minutes`` (the count restarts then). While locked, even the
    right PIN is refused, and attempts are not counted.
    """
    if patient.pin_hash is None:
        return Outcome(True)
    locked_now = and_(Patient.pin_locked_until.is_not(None), Patient.pin_locked_until > now)
    attempt, until = session.execute(
        update(Patient)
        .where(Patient.id == patient.id)
        .values(pin_failures=case((locked_now, Patient.pin_failures), else_=Patient.pin_failures + 1))
        .returning(Patient.pin_failures, Patient.pin_locked_until)
        .execution_options(synchronize_session=False)
    ).one()
    commit()  # every other attempt now sees this one, before this PIN is even hashed
    if until is not None and now < until:
        return Outcome(False, locked_until=until)
    if attempt > max_failures:
        return Outcome(False, locked_until=_lock(session, actor, patient, attempt, now, lock_minutes))
    if check_secret(patient.pin_hash, pin or ""):
        rehash = {"pin_hash": hash_pin(pin)} if pin and pin_needs_rehash(patient.pin_hash) else {}
        session.execute(
            update(Patient)
            .where(Patient.id == patient.id)
            .values(pin_failures=0, pin_locked_until=None, **rehash)
            .execution_options(synchronize_session=False)
        )
        session.refresh(patient)
        return Outcome(True)
    if attempt >= max_failures:
        return Outcome(False, locked_until=_lock(session, actor, patient, attempt, now, lock_minutes))
    session.refresh(patient)
    common: dict[str, Any] = {"patient_id": patient.id, "site_id": patient.site_id, "now": now}
    audit.record(session, actor, "pin_failed", patient, new={"failures": attempt}, **common)
    return Outcome(False, tries_left=max_failures - attempt)


def _lock(
    session: Session, actor: Actor, patient: Patient, attempt: int, now: dt.datetime, minutes: int
) -> dt.datetime:
    """Lock the patient out from ``now`` (unless another attempt already did); the lock's end."""
    until = now + dt.timedelta(minutes=minutes)
    locked = rowcount(
        session.execute(
            update(Patient)
            .where(Patient.id == patient.id, or_(Patient.pin_locked_until.is_(None), Patient.pin_locked_until <= now))
            .values(pin_failures=0, pin_locked_until=until)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(patient)
    if locked:
        audit.record(
            session,
            actor,
            "pin_locked",
            patient,
            patient_id=patient.id,
            site_id=patient.site_id,
            new={"failures": attempt, "locked_until": until},
            now=now,
        )
    return patient.pin_locked_until or until
