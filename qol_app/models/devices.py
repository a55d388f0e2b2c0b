"""Devices a patient signed in on: after signing out, the PIN alone lets them back in there."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Mapped, mapped_column

from qol_app.db import Base
from qol_app.models.types import created_at, intpk, patient_fk, str16, str64


class DeviceGrant(Base):
    """A revocable grant held by one browser as a cookie (only the token's SHA-256 is stored)."""

    __tablename__ = "device_grants"

    id: Mapped[intpk]
    token_hash: Mapped[str64] = mapped_column(unique=True)
    patient_id: Mapped[patient_fk]
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str16 | None]
