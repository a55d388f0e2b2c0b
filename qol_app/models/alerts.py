"""Symptom alerts raised from diary answers, and how staff handled them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qol_app.db import Base
from qol_app.models.trial import Patient
from qol_app.models.types import created_at, intpk, patient_fk, str16, str255


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (CheckConstraint("level IN ('red', 'amber')", name="level"),)

    id: Mapped[intpk]
    patient_id: Mapped[patient_fk]
    response_id: Mapped[int | None] = mapped_column(ForeignKey("responses.id"), unique=True)
    level: Mapped[str16]
    initial_level: Mapped[str16]
    rules: Mapped[list[Any]]
    triggering_answers: Mapped[dict[str, Any]]
    raised_at: Mapped[created_at]
    escalated_at: Mapped[dt.datetime | None]
    acknowledged_at: Mapped[dt.datetime | None]
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    action_taken: Mapped[str255 | None]

    patient: Mapped[Patient] = relationship()
