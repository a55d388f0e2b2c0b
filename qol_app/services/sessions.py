"""Server-side login sessions, the part services need: ending them.

Whatever takes away someone's right to be signed in ends their open sessions in the same
transaction: a disabled account, a new password, a rotated link, a new PIN, and a patient
recorded as died, withdrawn or lost (``treatment_events.set_patient_status``). The cookie holds
only a random id; ``qol_app.auth`` refuses an ended row on the next request, on every worker.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import update
from sqlalchemy.orm import Session

from qol_app.db import rowcount
from qol_app.models import DeviceGrant, LoginSession


def token_hash(token: str) -> str:
    """SHA-256 of a cookie's session id or a personal link's token (only hashes are stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def end_all(
    session: Session,
    subject_type: str,
    subject_id: int,
    reason: str,
    now: dt.datetime,
    *,
    keep: int | None = None,
) -> int:
    """End every open session of one person (but the one with id ``keep``); returns how many.

    ``reason`` (16 characters at most) is stored as the session's end reason.
    """
    stmt = update(LoginSession).where(
        LoginSession.subject_type == subject_type,
        LoginSession.subject_id == subject_id,
        LoginSession.ended_at.is_(None),
    )
    if keep is not None:
        stmt = stmt.where(LoginSession.id != keep)
    result = session.execute(
        stmt.values(ended_at=now, end_reason=reason[:16]).execution_options(synchronize_session=False)
    )
    if subject_type == "patient":  # whatever ends a patient's sessions also ends the way back in
        revoke_device_grants(session, subject_id, reason, now)
    return rowcount(result)


def revoke_device_grants(session: Session, patient_id: int, reason: str, now: dt.datetime) -> int:
    """Revoke every live device grant of the patient (the way back in on a device: services/devices);
    returns how many."""
    return rowcount(
        session.execute(
            update(DeviceGrant)
            .where(DeviceGrant.patient_id == patient_id, DeviceGrant.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason[:16])
            .execution_options(synchronize_session=False)
        )
    )
