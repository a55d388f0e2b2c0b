"""Expected questionnaire timepoints: what a patient should fill, when, and what became of it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qol_app.db import Base
from qol_app.models.trial import Patient, TreatmentEvent
from qol_app.models.types import created_at, intpk, patient_fk, str16, str32, str64, str255

TIMEPOINT_STATUSES = ("scheduled", "open", "overdue", "completed", "partial", "missed", "not_expected", "cancelled")
MISSED_REASONS = (
    "too_ill",
    "hospitalised",
    "cognitive_impairment",
    "refused",
    "technical",
    "forgot",
    "site_error",
    "other",
)


class ScheduleAmendment(Base):
    """A schedule file applied from an effective date (``qol schedule apply``).

    The newest row names the schedule in force: timepoints whose window opens before its
    ``effective_date`` and that an earlier version created are never rewritten by it.
    """

    __tablename__ = "schedule_amendments"

    id: Mapped[intpk]
    schedule_id: Mapped[str64]
    version: Mapped[str32]
    version_label: Mapped[str64] = mapped_column(doc="id@version, as stored on timepoints")
    effective_date: Mapped[dt.date] = mapped_column(doc="Changes only timepoints opening on or after it")
    source: Mapped[str255] = mapped_column(doc="The schedule file applied")
    sha256: Mapped[str64] = mapped_column(doc="Of the file's bytes")
    applied_at: Mapped[created_at]
    applied_by: Mapped[str64]


class Timepoint(Base):
    """One expected form set; planned by the scheduler and reconciled idempotently by its ``key``."""

    __tablename__ = "timepoints"
    __table_args__ = (
        UniqueConstraint("patient_id", "key"),
        Index("ix_timepoints_status_closes", "status", "grace_closes_at"),
    )

    id: Mapped[intpk]
    patient_id: Mapped[patient_fk]
    key: Mapped[str64] = mapped_column(doc="Stable planner key, e.g. sys-c3 or diary-2026-03-14")
    rule_id: Mapped[str64]
    schedule_version: Mapped[str64 | None] = mapped_column(
        doc="id@version of the schedule file that created this timepoint (kept when it moves)"
    )
    kind: Mapped[str16] = mapped_column(doc="questionnaire or diary")
    instruments: Mapped[list[Any]]
    anchor_event_id: Mapped[int | None] = mapped_column(ForeignKey("treatment_events.id"))
    anchor_kind: Mapped[str32]
    anchor_number: Mapped[int | None]
    anchor_date: Mapped[dt.date]
    target_date: Mapped[dt.date]
    window_start: Mapped[dt.date]
    window_end: Mapped[dt.date]
    grace_end: Mapped[dt.date]
    opens_at: Mapped[dt.datetime]
    closes_at: Mapped[dt.datetime]
    grace_closes_at: Mapped[dt.datetime]
    status: Mapped[str16] = mapped_column(default="scheduled")
    status_changed_at: Mapped[dt.datetime | None]
    not_expected_reason: Mapped[str32 | None]
    cancel_reason: Mapped[str64 | None]
    missed_reason: Mapped[str32 | None]
    missed_reason_text: Mapped[str255 | None]
    missed_reason_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    # Who answers this timepoint's forms: asked once, before the first form.
    respondent: Mapped[str16 | None]
    respondent_relationship: Mapped[str64 | None]
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    created_at: Mapped[created_at]

    patient: Mapped[Patient] = relationship()
    anchor_event: Mapped[TreatmentEvent | None] = relationship()
