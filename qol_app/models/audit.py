"""The append-only audit trail; each row carries a keyed hash chained to the previous row
(see ``qol_app.services.audit`` for the chain's rules)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from qol_app.db import Base
from qol_app.models.types import intpk, str16, str32, str64, str255


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[intpk] = mapped_column(doc="Position in the chain (1, 2, ...), assigned under the head lock")
    occurred_at: Mapped[dt.datetime]
    actor_type: Mapped[str16] = mapped_column(doc="staff, patient or system")
    actor_id: Mapped[str64 | None]
    action: Mapped[str32]
    entity_type: Mapped[str32]
    entity_id: Mapped[str64 | None]
    patient_id: Mapped[int | None] = mapped_column(index=True)
    site_id: Mapped[int | None]
    old: Mapped[dict[str, Any] | None]
    new: Mapped[dict[str, Any] | None]
    reason: Mapped[str255 | None]
    request_id: Mapped[str64 | None]
    prev_hash: Mapped[str64]
    hash: Mapped[str64] = mapped_column(unique=True, doc="HMAC-SHA256 of every other column, keyed by AUDIT_KEY")
    note: Mapped[str | None] = mapped_column(Text, default=None)


class AuditChainHead(Base):
    """One row holding the newest hash; updating it first serialises appenders on every backend
    and lets ``verify`` notice rows deleted from the end of the chain."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_hash: Mapped[str64]
    count: Mapped[int]
    mac: Mapped[str64 | None] = mapped_column(doc="HMAC of (count, last_hash); None only before the first event")
