"""Staff accounts and their site memberships (access is denied unless a membership grants it)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qol_app.db import Base
from qol_app.models.types import created_at, intpk, str16, str64, str255

ROLES = ("nurse", "investigator", "statistician", "admin")


class StaffUser(Base):
    __tablename__ = "staff_users"
    __table_args__ = (CheckConstraint("role IN ('nurse', 'investigator', 'statistician', 'admin')", name="role"),)

    id: Mapped[intpk]
    username: Mapped[str64] = mapped_column(unique=True)
    full_name: Mapped[str255]
    email: Mapped[str255 | None]
    phone: Mapped[str | None] = mapped_column(default=None)
    role: Mapped[str16]
    password_hash: Mapped[str255]
    active: Mapped[bool] = mapped_column(default=True)
    language: Mapped[str16] = mapped_column(default="en")
    created_at: Mapped[created_at]
    last_login_at: Mapped[dt.datetime | None]

    memberships: Mapped[list[SiteMembership]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def site_ids(self) -> set[int]:
        return {m.site_id for m in self.memberships}


class SiteMembership(Base):
    __tablename__ = "site_memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)

    user: Mapped[StaffUser] = relationship(back_populates="memberships")
