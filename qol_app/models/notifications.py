"""The outbox of reminders and notifications, and the scheduler's heartbeat."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from qol_app.db import Base
from qol_app.models.types import created_at, intpk, str16, str32, str64, str255


class OutboxMessage(Base):
    """A message to send at most once: ``dedupe_key`` (e.g. tp:12:r1:email) is unique."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_status_not_before", "status", "not_before"),)

    id: Mapped[intpk]
    dedupe_key: Mapped[str255] = mapped_column(unique=True)
    kind: Mapped[str32] = mapped_column(doc="reminder, call_task or alert")
    channel: Mapped[str16] = mapped_column(doc="email, sms or task")
    recipient: Mapped[str255 | None]
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    staff_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    timepoint_id: Mapped[int | None] = mapped_column(ForeignKey("timepoints.id"))
    language: Mapped[str16]
    subject: Mapped[str255]
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str16] = mapped_column(default="queued", doc="queued, sent, failed, skipped, done")
    created_at: Mapped[created_at]
    not_before: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str255 | None]


class SchedulerHeartbeat(Base):
    """``scheduler``: the newest run of any scheduler. ``instance:<host>:<pid>``: one row per
    scheduler process, so two running at once show (``services.heartbeat.conflict``)."""

    __tablename__ = "scheduler_heartbeats"

    name: Mapped[str64] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(doc="First run of this process (instance rows)")
    last_run_at: Mapped[dt.datetime]
    last_ok_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str255 | None]
    pid: Mapped[int | None]


class SchedulerLease(Base):
    """The scheduler's single-instance lock where the database has no advisory locks (SQLite):
    whoever holds an unexpired lease runs; it is renewed while running and expires if not."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str64] = mapped_column(primary_key=True)
    holder: Mapped[str64] = mapped_column(doc="Random id of the holding process")
    host: Mapped[str255 | None]
    pid: Mapped[int | None]
    acquired_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]


__all__ = ["OutboxMessage", "SchedulerHeartbeat", "SchedulerLease"]
