"""Device grants: the way back in after signing out, on the same device, with the PIN only.

A grant is issued when a patient signs in with a PIN (never for a patient without one: the grant
would then be a sign-in by itself). The browser keeps a random token in a cookie; the database
keeps its SHA-256. A grant is refused once expired, revoked, or when the patient is no longer
active; a new link, a new PIN or a status change revokes every grant of the patient.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from qol_app.models import DeviceGrant, Patient
from qol_app.services.sessions import token_hash

COOKIE = "qol_device"


def issue(session: Session, patient: Patient, now: dt.datetime, days: int) -> str | None:
    """A new grant for this device; returns the cookie's token (None: no grant for this patient)."""
    if patient.status != "active" or patient.pin_hash is None or days <= 0:
        return None
    token = secrets.token_urlsafe(32)
    session.add(
        DeviceGrant(
            token_hash=token_hash(token),
            patient_id=patient.id,
            created_at=now,
            expires_at=now + dt.timedelta(days=days),
        )
    )
    session.flush()
    return token


def find(session: Session, token: str | None, now: dt.datetime) -> DeviceGrant | None:
    """The live grant behind a cookie's token, for an active patient with a PIN; else None."""
    if not token or len(token) > 128:
        return None
    grant = session.scalar(select(DeviceGrant).where(DeviceGrant.token_hash == token_hash(token)))
    if grant is None or grant.revoked_at is not None or grant.expires_at <= now:
        return None
    patient = session.get(Patient, grant.patient_id)
    if patient is None or patient.status != "active" or patient.pin_hash is None:
        return None
    return grant
