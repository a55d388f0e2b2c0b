"""Enrolling patients and managing their personal link and PIN."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import Patient, Site
from qol_app.passwords import hash_pin
from qol_app.services import audit
from qol_app.services.audit import Actor
from qol_app.services.sessions import end_all, token_hash

# 32 bytes = 256 bits of randomness; the issue asks for at least 128.
TOKEN_BYTES = 32
AUDITED_FIELDS = [
    "study_id",
    "site_id",
    "arm",
    "randomization_date",
    "consent_date",
    "language",
    "timezone",
    "status",
    "status_date",
    "status_reason",
]


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_pin() -> str:
    return f"{secrets.randbelow(10**6):06d}"


@dataclasses.dataclass(frozen=True)
class Enrolled:
    patient: Patient
    token: str
    pin: str | None


def enroll_patient(
    session: Session,
    actor: Actor,
    *,
    study_id: str,
    site: Site,
    arm: str,
    randomization_date: dt.date,
    language: str,
    now: dt.datetime,
    consent_date: dt.date | None = None,
    timezone: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    with_pin: bool = True,
    pin: str | None = None,
    display_preferences: Mapping[str, Any] | None = None,
) -> Enrolled:
    """Create a patient with a fresh personal link (and PIN); the token is returned once, never stored.

    ``display_preferences``: keys of ``patient_records.DISPLAY_PREFERENCES`` (ServiceError for another)."""
    from qol_app.services.patient_records import clean_preferences

    preferences = clean_preferences(display_preferences)
    if arm not in ("A", "B"):
        raise ServiceError(N_("The arm must be A or B."))
    if session.scalar(select(Patient.id).where(Patient.study_id == study_id)) is not None:
        raise ServiceError(N_("Study id %(study_id)s is already enrolled."), study_id=study_id)
    token = new_token()
    pin = (pin or new_pin()) if with_pin else None
    patient = Patient(
        study_id=study_id,
        site=site,
        site_id=site.id,
        arm=arm,
        randomization_date=randomization_date,
        consent_date=consent_date,
        language=language,
        timezone=timezone,
        email=email,
        phone=phone,
        link_token_hash=token_hash(token),
        pin_hash=hash_pin(pin) if pin else None,
        created_at=now,
        display_preferences=preferences,
    )
    session.add(patient)
    session.flush()
    audit.record(
        session,
        actor,
        "enroll",
        patient,
        patient_id=patient.id,
        site_id=site.id,
        new={f: getattr(patient, f) for f in AUDITED_FIELDS}
        | {"pin_set": pin is not None}
        | ({"display_preferences": preferences} if preferences else {}),
        now=now,
    )
    return Enrolled(patient, token, pin)


def rotate_link(session: Session, actor: Actor, patient: Patient, *, reason: str, now: dt.datetime) -> str:
    """Issue a new personal link; the old one stops working and open sessions end."""
    token = new_token()
    patient.link_token_hash = token_hash(token)
    patient.link_rotated_at = now
    end_all(session, "patient", patient.id, "link_rotated", now)
    audit.record(
        session, actor, "rotate_link", patient, patient_id=patient.id, site_id=patient.site_id, reason=reason, now=now
    )
    return token


def set_pin(
    session: Session, actor: Actor, patient: Patient, pin: str | None, *, reason: str, now: dt.datetime
) -> None:
    """Set, reset or remove the PIN; clears any lock-out and ends the patient's open sessions
    (whoever was signed in with the old PIN signs in again)."""
    if pin is not None and not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 8):
        raise ServiceError(N_("A PIN is 4 to 8 digits."))
    old_set = patient.pin_hash is not None
    patient.pin_hash = hash_pin(pin) if pin else None
    patient.pin_failures = 0
    patient.pin_locked_until = None
    end_all(session, "patient", patient.id, "pin_changed", now)
    audit.record(
        session,
        actor,
        "set_pin",
        patient,
        patient_id=patient.id,
        site_id=patient.site_id,
        old={"pin_set": old_set},
        new={"pin_set": pin is not None},
        reason=reason,
        now=now,
    )


def find_by_token(session: Session, token: str) -> Patient | None:
    if not token or len(token) > 128:
        return None
    return session.scalar(select(Patient).where(Patient.link_token_hash == token_hash(token)))
