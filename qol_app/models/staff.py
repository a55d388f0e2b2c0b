"""Staff accounts and their site memberships (access is denied unless a membership grants it)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qol_app.db import Base
from qol_app.models.types import created_at, intpk, str16, str64, str255

ROLES = ("nurse", "investigator", "statistician", "admin", "monitor", "data_manager")
ROLE_CHECK = "role IN ('nurse', 'investigator', 'statistician', 'admin', 'monitor', 'data_manager')"


class StaffUser(Base):
    __tablename__ = "staff_users"
    __table_args__ = (CheckConstraint(ROLE_CHECK, name="role"),)

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
    # Second factor (RFC 6238 TOTP): the shared secret (base32), when it was confirmed, and the
    # last time step accepted, so one code cannot be used twice.
    totp_secret: Mapped[str64 | None]
    totp_enabled_at: Mapped[dt.datetime | None]
    totp_last_step: Mapped[int | None]

    memberships: Mapped[list[SiteMembership]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def site_ids(self) -> set[int]:
        return {m.site_id for m in self.memberships}

    @property
    def has_totp(self) -> bool:
        return self.totp_enabled_at is not None and self.totp_secret is not None


class SiteMembership(Base):
    __tablename__ = "site_memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)

    user: Mapped[StaffUser] = relationship(back_populates="memberships")


class RecoveryCode(Base):
    """A one-time code that replaces the TOTP code once (lost phone); stored as a SHA-256 hash.

    The codes carry 80 random bits, so a fast hash is enough (unlike passwords).
    """

    __tablename__ = "staff_recovery_codes"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str64] = mapped_column(unique=True)
    created_at: Mapped[created_at]
    used_at: Mapped[dt.datetime | None]


class SignInThrottle(Base):
    """Failed staff sign-ins per account or per client address, shared by every worker process.

    ``failures`` counts failures since ``window_started_at``; reaching the limit sets
    ``locked_until``. Rows are bumped with single conditional UPDATEs, so concurrent workers
    never lose a count.
    """

    __tablename__ = "signin_throttles"
    __table_args__ = (
        UniqueConstraint("scope", "key"),
        CheckConstraint("scope IN ('account', 'address')", name="scope"),
    )

    id: Mapped[intpk]
    scope: Mapped[str16]
    key: Mapped[str255] = mapped_column(doc="Lowercased username, or the client address")
    failures: Mapped[int] = mapped_column(default=0)
    window_started_at: Mapped[dt.datetime]
    locked_until: Mapped[dt.datetime | None]
