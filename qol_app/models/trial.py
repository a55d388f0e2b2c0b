"""Sites, patients and the treatment events that anchor the schedule."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qol_app.db import Base
from qol_app.models.types import created_at, intpk, patient_fk, site_fk, str16, str32, str64, str255

ARMS = ("A", "B")
PATIENT_STATUSES = ("active", "died", "withdrawn", "lost")
EVENT_KINDS = ("intrathecal_dose", "systemic_cycle", "progression", "end_of_treatment")
#: ``Patient.replan_at`` of a patient never planned: due at the next sweep.
REPLAN_NOW = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[intpk]
    code: Mapped[str16] = mapped_column(unique=True)
    name: Mapped[str255]
    timezone: Mapped[str64] = mapped_column(doc="IANA zone; windows and diary days are computed in it")
    default_language: Mapped[str16] = mapped_column(default="zh_Hans")
    emergency_phone: Mapped[str32] = mapped_column(doc="Shown with red alerts, e.g. 120 in China")
    contact_phone: Mapped[str32 | None]
    created_at: Mapped[created_at]

    patients: Mapped[list[Patient]] = relationship(back_populates="site")

    def safety_numbers(self) -> dict[str, str]:
        """The phone numbers of the "not watched around the clock" note on every signed-in patient
        page: the site's contact number (its emergency number when it has none) and the emergency one."""
        return {"site_phone": self.contact_phone or self.emergency_phone, "emergency": self.emergency_phone}


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint("arm IN ('A', 'B')", name="arm"),
        CheckConstraint("status IN ('active', 'died', 'withdrawn', 'lost')", name="status"),
    )

    id: Mapped[intpk]
    study_id: Mapped[str32] = mapped_column(unique=True, doc="Pseudonymous study id, e.g. S01-007")
    site_id: Mapped[site_fk]
    arm: Mapped[str] = mapped_column(String(1))
    randomization_date: Mapped[dt.date]
    consent_date: Mapped[dt.date | None]
    language: Mapped[str16]
    timezone: Mapped[str64 | None] = mapped_column(doc="Overrides the site's zone when set")
    status: Mapped[str16] = mapped_column(default="active")
    status_date: Mapped[dt.date | None]
    status_reason: Mapped[str255 | None]
    # Contact details for reminders only; never exported.
    email: Mapped[str255 | None]
    phone: Mapped[str32 | None]
    # How the patient's pages look (keys from services.patient_records.DISPLAY_PREFERENCES).
    display_preferences: Mapped[dict[str, Any] | None]
    # The personal link's token is kept only as a SHA-256 hash.
    link_token_hash: Mapped[str64] = mapped_column(unique=True)
    link_rotated_at: Mapped[dt.datetime | None]
    pin_hash: Mapped[str255 | None]
    pin_failures: Mapped[int] = mapped_column(default=0)
    pin_locked_until: Mapped[dt.datetime | None]
    created_at: Mapped[created_at]
    # When the calendar alone next changes the patient's plan (a recurring follow-up reaching the
    # lookahead horizon: the planner's Plan.changes_on, local midnight in UTC); NULL: never. Set
    # by every reconcile; the sweep reconciles the patients whose instant has come.
    replan_at: Mapped[dt.datetime | None] = mapped_column(index=True, default=REPLAN_NOW)

    site: Mapped[Site] = relationship(back_populates="patients")
    events: Mapped[list[TreatmentEvent]] = relationship(back_populates="patient", order_by="TreatmentEvent.date")

    @property
    def tz(self) -> str:
        return self.timezone or self.site.timezone


class PatientStatusChange(Base):
    """One recorded patient status (death, withdrawal, loss, a return to active), append-only.

    ``recorded_at`` is when it was recorded (exports as of an earlier time do not know it yet);
    ``status_date`` the date it took effect. ``kind`` is ``set`` for an ordinary status change or
    ``correction`` for a correction of a recorded death (its own audited act).
    """

    __tablename__ = "patient_status_changes"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'died', 'withdrawn', 'lost')", name="status"),
        CheckConstraint("kind IN ('set', 'correction')", name="kind"),
    )

    id: Mapped[intpk]
    patient_id: Mapped[patient_fk]
    status: Mapped[str16]
    status_date: Mapped[dt.date | None]
    reason: Mapped[str255 | None]
    kind: Mapped[str16] = mapped_column(default="set")
    recorded_at: Mapped[dt.datetime]
    recorded_by: Mapped[str64 | None] = mapped_column(doc="The actor: staff:<id>, system:<name>")


class TreatmentEvent(Base):
    """An administered treatment or clinical event, on its actual (site-local) date.

    Deleting is soft (``deleted_at`` + reason) so the audit trail and cancelled timepoints
    keep pointing at something.
    """

    __tablename__ = "treatment_events"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('intrathecal_dose', 'systemic_cycle', 'progression', 'end_of_treatment')", name="kind"
        ),
    )

    id: Mapped[intpk]
    patient_id: Mapped[patient_fk]
    kind: Mapped[str32]
    number: Mapped[int | None] = mapped_column(doc="Cycle or dose number")
    date: Mapped[dt.date]
    cycle_length_days: Mapped[int | None]
    drug: Mapped[str64 | None]
    created_at: Mapped[created_at]
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    deleted_at: Mapped[dt.datetime | None]
    deleted_reason: Mapped[str255 | None]

    patient: Mapped[Patient] = relationship(back_populates="events")


__all__ = ["ARMS", "EVENT_KINDS", "PATIENT_STATUSES", "Patient", "PatientStatusChange", "Site", "TreatmentEvent"]
