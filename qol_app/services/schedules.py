"""Schedule versions and amendments: what an amendment would change, and applying it, audited.

An amendment is a schedule file (with its own ``version``) taking effect from an effective date
(CLINICAL.md §2): it creates, moves or cancels only timepoints whose window opens on or after
that date; the past, with its statuses and reasons, is never rewritten. The rules themselves are
pure (:class:`qol_app.scheduling.Amendment`, :func:`qol_app.scheduling.diff`); this module reads
the rows, previews per patient and applies through :func:`timepoints.reconcile_patient`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import Patient, ScheduleAmendment
from qol_app.scheduling import Amendment, Schedule
from qol_app.services import audit, timepoints
from qol_app.services.audit import Actor

ENTITY = "schedule_amendment"


@dataclasses.dataclass(frozen=True)
class PatientChanges:
    """What an amendment changes for one patient (timepoint keys), and how many past rows it keeps."""

    study_id: str
    create: tuple[str, ...]
    move: tuple[str, ...]
    cancel: tuple[str, ...]
    not_expected: tuple[str, ...]
    reactivate: tuple[str, ...]
    kept_past: int

    @property
    def changed(self) -> bool:
        return bool(self.create or self.move or self.cancel or self.not_expected or self.reactivate)


def history(session: Session) -> list[ScheduleAmendment]:
    """Applied amendments, oldest first."""
    return list(session.scalars(select(ScheduleAmendment).order_by(ScheduleAmendment.applied_at, ScheduleAmendment.id)))


def _amendment(schedule: Schedule, effective: dt.date, now: dt.datetime) -> Amendment:
    return Amendment(schedule.version_label, effective, now)


def preview(session: Session, schedule: Schedule, effective: dt.date, now: dt.datetime) -> list[PatientChanges]:
    """Per patient (by study id), what applying ``schedule`` from ``effective`` at ``now`` would do.

    Writes nothing. Patients the amendment leaves as they are are included with no changes.
    """
    amendment = _amendment(schedule, effective, now)
    result = []
    for patient in session.scalars(select(Patient).order_by(Patient.study_id)):
        p = timepoints.preview_patient(session, patient, now, schedule, amendment)
        c = p.changes
        kept = sum(1 for row in p.rows if row.window_start < effective and row.schedule_version != amendment.version)
        result.append(
            PatientChanges(
                study_id=patient.study_id,
                create=tuple(tp.key for tp in c.to_create),
                move=tuple(u.existing.key for u in c.to_move),
                cancel=tuple(x.existing.key for x in c.to_cancel),
                not_expected=tuple(m.existing.key for m in c.to_mark_not_expected),
                reactivate=(*(u.existing.key for u in c.to_reactivate), *(row.key for row in c.to_restore)),
                kept_past=kept,
            )
        )
    return result


def apply(
    session: Session,
    actor: Actor,
    schedule: Schedule,
    effective: dt.date,
    now: dt.datetime,
    *,
    source: str | Path,
    checkpoint=lambda: None,
) -> timepoints.ReconcileAllResult:
    """Record the amendment (audited) and reconcile every patient under it; flushes, the caller commits.

    Refuses (ServiceError) a version that is already the one in force, and an effective date
    before the one in force (the past of the current version is not the new one's to change).
    Every timepoint change is audited with the reason "schedule amendment <id@version> from <date>".
    """
    current = session.scalars(
        select(ScheduleAmendment).order_by(ScheduleAmendment.applied_at.desc(), ScheduleAmendment.id.desc()).limit(1)
    ).first()
    if current is not None and current.version_label == schedule.version_label:
        raise ServiceError(N_("Schedule %(version)s is already in force."), version=schedule.version_label)
    if current is not None and effective < current.effective_date:
        raise ServiceError(
            N_("The effective date %(date)s is before that of the schedule in force (%(current)s)."),
            date=effective.isoformat(),
            current=current.effective_date.isoformat(),
        )
    data = Path(source).read_bytes()
    row = ScheduleAmendment(
        schedule_id=schedule.id,
        version=schedule.version,
        version_label=schedule.version_label,
        effective_date=effective,
        source=str(source)[:255],
        sha256=hashlib.sha256(data).hexdigest(),
        applied_at=now,
        applied_by=f"{actor.type}:{actor.id or ''}"[:64],
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "apply",
        entity_type=ENTITY,
        entity_id=row.id,
        new={
            "version": row.version_label,
            "effective_date": effective,
            "source": row.source,
            "sha256": row.sha256,
        },
        now=now,
    )
    amendment = _amendment(schedule, effective, now)
    reason = f"schedule amendment {schedule.version_label} from {effective.isoformat()}"
    result = timepoints.ReconcileAllResult()
    for pid in session.scalars(select(Patient.id).order_by(Patient.id)).all():
        patient = session.get(Patient, pid)
        assert patient is not None
        try:
            with session.begin_nested():
                result.changes += timepoints.reconcile_patient(
                    session, actor, patient, now, reason=reason, schedule=schedule, amendment=amendment
                )
        except ValueError as exc:
            result.errors.append(f"{patient.study_id}: {exc}")
        result.patients += 1
        checkpoint()
    return result
