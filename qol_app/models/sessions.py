"""Server-side login sessions, so logout, idle expiry and disabling an account take effect at once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint
from sqlalchemy.orm import Mapped, mapped_column

from qol_app.db import Base
from qol_app.models.types import created_at, intpk, str16, str64


class LoginSession(Base):
    __tablename__ = "login_sessions"
    __table_args__ = (CheckConstraint("subject_type IN ('staff', 'patient')", name="subject_type"),)

    id: Mapped[intpk]
    token_hash: Mapped[str64] = mapped_column(unique=True, doc="SHA-256 of the random id in the cookie")
    subject_type: Mapped[str16]
    subject_id: Mapped[int] = mapped_column(index=True)
    created_at: Mapped[created_at]
    last_seen_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]
    end_reason: Mapped[str16 | None]
