"""Data locks: from a moment on, the trial, a site or a patient takes no more writes.

An admin or data manager locks (e.g. for the primary analysis) with a reason, and releases with
a reason; both are audited, and a lock row is never deleted. A lock applies from ``locked_at``
(now, or a later moment) until released. Patient data is locked when the trial, the patient's
site or the patient is. Web write routes check through ``qol_app.locking`` (one guard before
every write request), the CLI and the scheduler through :func:`check_unlocked` and
:func:`locked_clause`. Services flush; the caller commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import DataLock, Patient, Site
from qol_app.models.locks import LOCK_SCOPES
from qol_app.services import audit
from qol_app.services.audit import Actor

#: A lock set for "now" from a form may be a few seconds behind the server clock.
PAST_TOLERANCE = dt.timedelta(minutes=2)
_SCOPE_ORDER = {scope: n for n, scope in enumerate(LOCK_SCOPES)}


class DataLocked(ServiceError):
    """A write to locked data was refused; ``lock`` is the lock that applies."""

    def __init__(self, lock: DataLock) -> None:
        self.lock = lock
        super().__init__(
            N_("These data are locked since %(since)s (%(reason)s). Ask a data manager to unlock them."),
            since=lock.locked_at,
            reason=lock.reason,
        )


def _in_force(now: dt.datetime) -> ColumnElement[bool]:
    return and_(DataLock.locked_at <= now, DataLock.released_at.is_(None))


def lock_for(
    session: Session, now: dt.datetime, *, patient: Patient | None = None, site_id: int | None = None
) -> DataLock | None:
    """The lock in force on ``patient`` (or on a site, or on the trial when neither is given), widest first."""
    if patient is not None:
        site_id = patient.site_id
    targets = [DataLock.scope == "trial"]
    if site_id is not None:
        targets.append(and_(DataLock.scope == "site", DataLock.site_id == site_id))
    if patient is not None:
        targets.append(and_(DataLock.scope == "patient", DataLock.patient_id == patient.id))
    found = session.scalars(select(DataLock).where(_in_force(now), or_(*targets))).all()
    return min(found, key=lambda lock: (_SCOPE_ORDER[lock.scope], lock.id)) if found else None


def check_unlocked(
    session: Session, now: dt.datetime, *, patient: Patient | None = None, site_id: int | None = None
) -> None:
    """Raise :class:`DataLocked` when a lock is in force on the patient, the site or the trial."""
    lock = lock_for(session, now, patient=patient, site_id=site_id)
    if lock is not None:
        raise DataLocked(lock)


def locked_clause(now: dt.datetime, patient_id: Any = Patient.id, site_id: Any = Patient.site_id) -> ColumnElement:
    """SQL condition: the patient (by its id and site id columns) is under a lock in force at ``now``."""
    return exists().where(
        _in_force(now),
        or_(
            DataLock.scope == "trial",
            and_(DataLock.scope == "site", DataLock.site_id == site_id),
            and_(DataLock.scope == "patient", DataLock.patient_id == patient_id),
        ),
    )


def locked_patient_ids(session: Session, patient_ids: Iterable[int], now: dt.datetime) -> set[int]:
    """Which of ``patient_ids`` are locked at ``now`` (for the scheduler, which skips them)."""
    ids = sorted(set(patient_ids))
    if not ids or not session.scalar(select(exists().where(_in_force(now)))):
        return set()
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found.update(session.scalars(select(Patient.id).where(Patient.id.in_(chunk), locked_clause(now))))
    return found


def _actor_label(actor: Actor) -> str:
    return f"{actor.type}:{actor.id}"[:64]


def _require_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(N_("A reason is required."))
    return reason[:255]


def lock(
    session: Session,
    actor: Actor,
    scope: str,
    *,
    reason: str,
    now: dt.datetime,
    at: dt.datetime | None = None,
    site: Site | None = None,
    patient: Patient | None = None,
) -> DataLock:
    """Lock the trial, ``site`` or ``patient`` from ``at`` (default ``now``; never in the past)."""
    reason = _require_reason(reason)
    at = at or now
    if at.utcoffset() is None:
        raise ValueError("the lock moment needs a time zone")
    if at < now - PAST_TOLERANCE:
        raise ServiceError(N_("A lock cannot start in the past."))
    if scope not in LOCK_SCOPES:
        raise ServiceError(N_("Unknown lock scope %(scope)s."), scope=scope)
    if scope == "site" and site is None:
        raise ServiceError(N_("Choose the site to lock."))
    if scope == "patient" and patient is None:
        raise ServiceError(N_("Choose the patient to lock."))
    site_id = site.id if scope == "site" and site is not None else None
    patient_id = patient.id if scope == "patient" and patient is not None else None
    same = select(DataLock.id).where(
        DataLock.scope == scope,
        DataLock.released_at.is_(None),
        DataLock.site_id == site_id if site_id is not None else true(),
        DataLock.patient_id == patient_id if patient_id is not None else true(),
    )
    if session.scalar(same) is not None:
        raise ServiceError(N_("This is already locked (or a lock is set to start); release that lock first."))
    row = DataLock(
        scope=scope,
        site_id=site_id,
        patient_id=patient_id,
        locked_at=at,
        reason=reason,
        locked_by=_actor_label(actor),
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "data_lock",
        row,
        patient_id=patient_id,
        site_id=site_id
        if site_id is not None
        else (patient.site_id if patient is not None and patient_id is not None else None),
        new={"scope": scope, "site_id": site_id, "patient_id": patient_id, "locked_at": at},
        reason=reason,
        now=now,
    )
    return row


def release(session: Session, actor: Actor, row: DataLock, *, reason: str, now: dt.datetime) -> None:
    """Release (unlock) ``row``: writes are accepted again; the lock stays on record."""
    reason = _require_reason(reason)
    if row.released_at is not None:
        raise ServiceError(N_("This lock was already released."))
    row.released_at = now
    row.released_by = _actor_label(actor)
    row.release_reason = reason
    session.flush()
    patient_site = (
        session.scalar(select(Patient.site_id).where(Patient.id == row.patient_id)) if row.patient_id else None
    )
    audit.record(
        session,
        actor,
        "data_unlock",
        row,
        patient_id=row.patient_id,
        site_id=row.site_id or patient_site,
        old={"released_at": None},
        new={"released_at": now},
        reason=reason,
        now=now,
    )


def all_locks(session: Session) -> list[DataLock]:
    """Every lock, those not released first, newest first."""
    return list(session.scalars(select(DataLock).order_by(DataLock.released_at.is_not(None), DataLock.id.desc())))


def describe(session: Session, as_of: dt.datetime) -> dict[str, Any]:
    """The lock state at ``as_of`` for an export manifest: pseudonymous (site codes, study ids), no free text."""
    rows = session.execute(
        select(DataLock, Site.code, Patient.study_id)
        .outerjoin(Site, Site.id == DataLock.site_id)
        .outerjoin(Patient, Patient.id == DataLock.patient_id)
        .where(
            DataLock.locked_at <= as_of,
            or_(DataLock.released_at.is_(None), DataLock.released_at > as_of) if as_of else false(),
        )
        .order_by(DataLock.id)
    ).all()
    locks = [
        {
            "id": row.id,
            "scope": row.scope,
            "site": code,
            "patient_id": study_id,
            "locked_at": row.locked_at,
        }
        for row, code, study_id in rows
    ]
    return {
        "trial_locked": any(entry["scope"] == "trial" for entry in locks),
        "locks": locks,
    }
