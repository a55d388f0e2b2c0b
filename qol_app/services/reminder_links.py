"""Reminder links: one fresh sign-in link per reminder, stored only as a hash.

A link opens the same sign-in page as the personal link (a GET changes nothing; the PIN is
still asked where the patient has one). It works while all of these hold:

* ``now`` is before the timepoint's grace end (the window's late deadline);
* no newer link was issued for the same timepoint (each reminder supersedes the last);
* the timepoint still has the window the link was sent for, and is neither cancelled nor
  not expected (a moved window gets new reminders, with new links);
* the personal link was not re-issued since (a nurse rotating a lost card revokes these too).

Tokens are 128 random bits (``secrets.token_urlsafe(16)``); the table keeps their SHA-256.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from qol_app.models import Patient, ReminderLink, Timepoint

TOKEN_BYTES = 16  # 128 bits
MAX_TOKEN_LENGTH = 64


def window_key(opens_at: dt.datetime, closes_at: dt.datetime) -> str:
    """A window's identity in outbox keys and links: its UTC opening and closing minutes.

    Derived from the timepoint's columns alone, so any code that moves a window changes it.
    """
    fmt = "%Y%m%d%H%M"
    return f"w{opens_at.astimezone(dt.UTC).strftime(fmt)}-{closes_at.astimezone(dt.UTC).strftime(fmt)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(
    session: Session,
    *,
    patient_id: int,
    timepoint_id: int,
    window: str,
    expires_at: dt.datetime,
    now: dt.datetime,
    message_id: int | None = None,
) -> str:
    """Store a new link for the timepoint (superseding its older ones); returns the token."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.execute(
        update(ReminderLink)
        .where(ReminderLink.timepoint_id == timepoint_id, ReminderLink.superseded_at.is_(None))
        .values(superseded_at=now)
        .execution_options(synchronize_session=False)
    )
    session.add(
        ReminderLink(
            token_hash=token_hash(token),
            patient_id=patient_id,
            timepoint_id=timepoint_id,
            message_id=message_id,
            window_key=window,
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return token


@dataclasses.dataclass(frozen=True)
class Lookup:
    """What a token opens: the link, its patient and timepoint, and why it no longer works (or None)."""

    link: ReminderLink
    patient: Patient
    timepoint: Timepoint
    refused: str | None  # "expired", "superseded", "moved", "revoked"

    @property
    def ok(self) -> bool:
        return self.refused is None


def find(session: Session, token: str, now: dt.datetime) -> Lookup | None:
    """The link for ``token`` with its verdict at ``now``; None for a token never issued. Reads only."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    link = session.scalar(select(ReminderLink).where(ReminderLink.token_hash == token_hash(token)))
    if link is None:
        return None
    patient = session.get_one(Patient, link.patient_id)
    tp = session.get_one(Timepoint, link.timepoint_id)
    refused = None
    if link.superseded_at is not None:
        refused = "superseded"
    elif now >= tp.grace_closes_at:
        refused = "expired"
    elif tp.status in ("cancelled", "not_expected") or window_key(tp.opens_at, tp.closes_at) != link.window_key:
        refused = "moved"
    elif patient.link_rotated_at is not None and patient.link_rotated_at > link.created_at:
        refused = "revoked"
    return Lookup(link, patient, tp, refused)


def mark_used(session: Session, link: ReminderLink, now: dt.datetime) -> None:
    """Note a successful sign-in through the link (after the PIN, never on GET)."""
    link.last_used_at = now
    session.flush()
