"""Server-side login sessions for patients and staff.

The cookie (Flask's signed session) holds only a random session id; the row in
``login_sessions`` decides whether it is still valid, so logout, idle expiry and disabling
an account end the session at once on every worker.
"""

from __future__ import annotations

import datetime as dt
import secrets

from flask import current_app, g, session
from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.orm import contains_eager

from qol_app.db import db, utcnow
from qol_app.models import LoginSession, Patient, StaffUser
from qol_app.services.sessions import token_hash

#: Cookie key: id of the patient whose session here ended because of their status (see load_current).
ENDED = "ended"
# Writing last_seen on every request would turn every page view into a write.
TOUCH_EVERY = dt.timedelta(seconds=60)


def begin(subject_type: str, subject_id: int, now: dt.datetime) -> None:
    """Start a fresh session (a new id each time: no fixation) and put its id in the cookie."""
    token = secrets.token_urlsafe(32)
    db.session.add(
        LoginSession(
            token_hash=token_hash(token),
            subject_type=subject_type,
            subject_id=subject_id,
            created_at=now,
            last_seen_at=now,
        )
    )
    keep_lang = session.get("lang")
    session.clear()
    if keep_lang:
        session["lang"] = keep_lang
    session["sid"] = token
    session.permanent = False


def end(reason: str, now: dt.datetime) -> None:
    token = session.pop("sid", None)
    if token:
        db.session.execute(
            update(LoginSession)
            .where(LoginSession.token_hash == token_hash(token), LoginSession.ended_at.is_(None))
            .values(ended_at=now, end_reason=reason)
        )


def idle_limit(subject_type: str) -> dt.timedelta:
    key = "PATIENT_IDLE_MINUTES" if subject_type == "patient" else "STAFF_IDLE_MINUTES"
    return dt.timedelta(minutes=current_app.config[key])


def absolute_limit(subject_type: str) -> dt.timedelta:
    """How long a session may last from sign-in, however active."""
    key = "PATIENT_SESSION_MAX_HOURS" if subject_type == "patient" else "STAFF_SESSION_MAX_HOURS"
    return dt.timedelta(hours=current_app.config[key])


#: One query for every request: the session row with its patient and the patient's site (every
#: patient page shows the site's phone numbers), instead of three. Built once (it runs per request).
_SESSION_QUERY = (
    select(LoginSession, Patient)
    .outerjoin(Patient, and_(LoginSession.subject_type == "patient", Patient.id == LoginSession.subject_id))
    .outerjoin(Patient.site)
    .options(contains_eager(Patient.site))
    .where(LoginSession.token_hash == bindparam("token_hash"))
)


def load_current(now: dt.datetime) -> None:
    """Resolve ``g.patient`` / ``g.staff`` from the cookie; note in ``g.session_expired`` why not.

    ``g.ended_patient`` is the patient whose session ended because they are no longer active
    (died, withdrawn, lost): their pages show only a kind message.
    """
    g.patient = None
    g.ended_patient = None
    g.staff = None
    g.session_expired = False
    token = session.get("sid")
    if not token:
        ended = session.get(ENDED)
        if isinstance(ended, int):  # a session ended by the patient's status, earlier on this browser
            patient = db.session.get(Patient, ended)
            if patient is not None and patient.status != "active":
                g.ended_patient = patient
            else:
                session.pop(ENDED, None)
        return
    found = db.session.execute(_SESSION_QUERY, {"token_hash": token_hash(token)}).first()
    row, found_patient = (found[0], found[1]) if found is not None else (None, None)
    if row is not None:
        g.expired_subject = (row.subject_type, row.subject_id)  # replaced by g.patient/g.staff if valid
    if row is None or row.ended_at is not None:
        session.pop("sid", None)
        g.session_expired = True
        if row is not None and found_patient is not None and found_patient.status != "active":
            g.ended_patient = found_patient
            session[ENDED] = found_patient.id
        return
    expired = (
        "idle"
        if now - row.last_seen_at > idle_limit(row.subject_type)
        else "max_age"
        if now - row.created_at > absolute_limit(row.subject_type)
        else None
    )
    if expired is not None:
        row.ended_at, row.end_reason = now, expired
        db.session.commit()
        session.pop("sid", None)
        g.session_expired = True
        return
    if row.subject_type == "patient":
        patient = found_patient
        if patient is None or patient.status != "active":
            # Recorded as died, withdrawn or lost: the status service ends the sessions; this
            # also holds for a status written any other way.
            row.ended_at, row.end_reason = now, (patient.status if patient is not None else "gone")
            db.session.commit()
            session.pop("sid", None)
            g.session_expired = True
            g.ended_patient = patient
            if patient is not None:
                session[ENDED] = patient.id
            return
        g.patient = patient
    else:
        staff = db.session.get(StaffUser, row.subject_id)
        if staff is not None and not staff.active:
            row.ended_at, row.end_reason = now, "disabled"
            db.session.commit()
            session.pop("sid", None)
            return
        g.staff = staff
    if now - row.last_seen_at > TOUCH_EVERY:
        row.last_seen_at = now
        db.session.commit()
    g.login_session = row


def now() -> dt.datetime:
    """The request's clock: tests may freeze it with ``app.config['FROZEN_NOW']``."""
    frozen = current_app.config.get("FROZEN_NOW")
    return frozen if frozen is not None else utcnow()
