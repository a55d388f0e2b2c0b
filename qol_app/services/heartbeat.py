"""The scheduler's heartbeat: written after every run, read by staff pages.

Reminders and status changes silently stop when the scheduler process dies, so staff pages
show a banner when the last successful run is older than ``SCHEDULER_STALE_MINUTES``, and
admins see the last error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qol_app.models import SchedulerHeartbeat

DEFAULT_NAME = "scheduler"


@dataclasses.dataclass(frozen=True)
class HeartbeatStatus:
    """``stale`` is True when the scheduler never succeeded or not within the limit."""

    stale: bool
    last_ok_at: dt.datetime | None
    last_error: str | None
    last_run_at: dt.datetime | None = None
    host: str | None = None
    pid: int | None = None


def beat(session: Session, now: dt.datetime, *, error: str | None = None, name: str = DEFAULT_NAME) -> None:
    """Record a run at ``now``: successful unless ``error`` is given (flushes; caller commits)."""
    row = session.get(SchedulerHeartbeat, name, populate_existing=True)
    if row is None:
        row = SchedulerHeartbeat(name=name, last_run_at=now)
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:  # another scheduler wrote the first beat at the same moment
            row = session.get(SchedulerHeartbeat, name, populate_existing=True)
            assert row is not None
    row.last_run_at = now
    row.host = socket.gethostname()[:255]
    row.pid = os.getpid()
    if error:
        row.last_error = error
    else:
        row.last_ok_at = now
        row.last_error = None
    session.flush()


def status(session: Session, now: dt.datetime, stale_minutes: int, *, name: str = DEFAULT_NAME) -> HeartbeatStatus:
    """The heartbeat as staff pages show it; a missing row (never ran) is stale."""
    row = session.get(SchedulerHeartbeat, name)
    if row is None:
        return HeartbeatStatus(stale=True, last_ok_at=None, last_error=None)
    stale = row.last_ok_at is None or now - row.last_ok_at > dt.timedelta(minutes=stale_minutes)
    return HeartbeatStatus(
        stale=stale,
        last_ok_at=row.last_ok_at,
        last_error=row.last_error,
        last_run_at=row.last_run_at,
        host=row.host,
        pid=row.pid,
    )
