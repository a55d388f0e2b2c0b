"""Symptom alerts raised from diary answers, and how staff handled them."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qol_app.db import Base
from qol_app.models.trial import Patient
from qol_app.models.types import created_at, intpk, patient_fk, str16, str255

if TYPE_CHECKING:
    from qol_app.models.responses import Response

#: Where an alert's answers came from: a patient's saved page before Send, the patient's Send,
#: a staff-entered form, a staff correction.
SOURCES = ("saved_not_sent", "sent", "staff_entry", "correction")


class Alert(Base):
    """One alert per form (the first revision whose answers triggered it; corrections update it).

    Its level only rises; if the triggering answers change later it stays, and ``changed_answers``
    holds the answers as they are now for the nurse to judge.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint("level IN ('red', 'amber')", name="level"),
        CheckConstraint("source IN ('saved_not_sent', 'sent', 'staff_entry', 'correction')", name="source"),
    )

    id: Mapped[intpk]
    patient_id: Mapped[patient_fk]
    response_id: Mapped[int | None] = mapped_column(ForeignKey("responses.id"), unique=True)
    level: Mapped[str16]
    initial_level: Mapped[str16]
    rules: Mapped[list[Any]]
    triggering_answers: Mapped[dict[str, Any]]
    source: Mapped[str16] = mapped_column(server_default="sent")
    changed_answers: Mapped[dict[str, Any] | None]
    raised_at: Mapped[created_at]
    escalated_at: Mapped[dt.datetime | None]
    acknowledged_at: Mapped[dt.datetime | None]
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    action_taken: Mapped[str255 | None]

    patient: Mapped[Patient] = relationship()
    response: Mapped[Response | None] = relationship()
