"""The outbox of reminders, call tasks and alert notifications, reminder links, and the heartbeat."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from qol_app.db import Base
from qol_app.models.types import created_at, intpk, str16, str32, str64, str255

#: Outbox statuses. Messages: queued -> sending -> sent | logged | failed | skipped (or back to
#: queued for a retry). Call tasks: open (on the nurses' work list) -> done (an outcome was
#: recorded) | skipped (superseded, form completed, patient gone).
OUTBOX_STATUSES = ("queued", "sending", "sent", "logged", "failed", "skipped", "open", "done")
CALL_OUTCOMES = ("will_answer", "too_ill", "done_by_phone", "no_answer", "wrong_number")


class OutboxMessage(Base):
    """A message to send at most once: ``dedupe_key`` (e.g. tp:12:w…:r1:email) is unique.

    A skipped reminder or call task frees its key (``~void<id>`` is appended) so that a window
    that comes back is planned afresh; a delivered one keeps it, so nothing goes out twice.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_status_not_before", "status", "not_before"),
        Index("ix_outbox_messages_timepoint_id", "timepoint_id"),
    )

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
    status: Mapped[str16] = mapped_column(default="queued", doc=", ".join(OUTBOX_STATUSES))
    created_at: Mapped[created_at]
    not_before: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str255 | None]
    window_key: Mapped[str64 | None] = mapped_column(doc="The timepoint window it was planned for (see reminder_keys)")
    step: Mapped[str16 | None] = mapped_column(doc="r1, r2 or call")
    template: Mapped[str32 | None] = mapped_column(doc="SMS template name: reminder, alert")
    params: Mapped[dict[str, Any] | None] = mapped_column(doc="SMS template parameters (never a token)")
    provider_message_id: Mapped[str255 | None] = mapped_column(doc="The gateway's id once it accepted the message")
    fallback_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_messages.id"), doc="The failed message this one replaces on the next channel"
    )
    outcome: Mapped[str32 | None] = mapped_column(doc="Call tasks: " + ", ".join(CALL_OUTCOMES))
    outcome_at: Mapped[dt.datetime | None]
    outcome_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    outcome_note: Mapped[str255 | None]


class ReminderLink(Base):
    """A reminder's own sign-in link: the token is kept only as its SHA-256 hash.

    Valid while ``now < expires_at`` (the window's grace end), not superseded by a newer link
    for the same timepoint, and while the timepoint still has the window it was sent for.
    """

    __tablename__ = "reminder_links"

    id: Mapped[intpk]
    token_hash: Mapped[str64] = mapped_column(unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    timepoint_id: Mapped[int] = mapped_column(ForeignKey("timepoints.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_messages.id"))
    window_key: Mapped[str64]
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime]
    superseded_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


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


__all__ = [
    "CALL_OUTCOMES",
    "OUTBOX_STATUSES",
    "OutboxMessage",
    "ReminderLink",
    "SchedulerHeartbeat",
    "SchedulerLease",
]
