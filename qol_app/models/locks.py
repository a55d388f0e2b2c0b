"""Data locks (trial, site or patient) and the marks that tell demo rows from real ones."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from qol_app.db import Base
from qol_app.models.types import created_at, intpk, str16, str32, str64, str255

LOCK_SCOPES = ("trial", "site", "patient")


class DataLock(Base):
    """From ``locked_at`` on, the trial, one site or one patient takes no writes until released.

    A released lock stays (who released it, when and why); locks are never deleted.
    """

    __tablename__ = "data_locks"
    __table_args__ = (
        CheckConstraint("scope IN ('trial', 'site', 'patient')", name="scope"),
        CheckConstraint(
            "(scope = 'trial' AND site_id IS NULL AND patient_id IS NULL)"
            " OR (scope = 'site' AND site_id IS NOT NULL AND patient_id IS NULL)"
            " OR (scope = 'patient' AND patient_id IS NOT NULL)",
            name="target",
        ),
    )

    id: Mapped[intpk]
    scope: Mapped[str16]
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="RESTRICT"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"), index=True)
    locked_at: Mapped[dt.datetime] = mapped_column(doc="The moment the lock takes effect (UTC)")
    reason: Mapped[str255]
    locked_by: Mapped[str64] = mapped_column(doc="Audit actor, e.g. staff:12 or system:cli")
    created_at: Mapped[created_at]
    released_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    released_by: Mapped[str64 | None]
    release_reason: Mapped[str255 | None]


class DemoRecord(Base):
    """A site, staff account or patient created by ``qol demo`` (refused in production)."""

    __tablename__ = "demo_records"

    entity_type: Mapped[str32] = mapped_column(primary_key=True, doc="sites, staff_users or patients")
    entity_id: Mapped[int] = mapped_column(primary_key=True)


__all__ = ["LOCK_SCOPES", "DataLock", "DemoRecord"]
