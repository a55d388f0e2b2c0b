"""The scheduler's heartbeat: written after every run, read by staff pages.

Reminders and status changes silently stop when the scheduler process dies, so staff pages
show a banner when the last successful run is older than ``SCHEDULER_STALE_MINUTES``, and
admins see the last error. Each scheduler process also beats a row of its own
(``instance:<host>:<pid>``): two processes whose runs interleave are two schedulers running at
once, which the single-instance lock should make impossible, so staff pages say so loudly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qol_app.models import SchedulerHeartbeat

DEFAULT_NAME = "scheduler"
INSTANCE_PREFIX = "instance:"
#: Instance rows older than this are removed (one per process start: cron runs add up).
INSTANCE_KEEP = dt.timedelta(days=2)


def instance_name(host: str | None = None, pid: int | None = None) -> str:
    """This process's own heartbeat row name (at most 64 characters)."""
    host = host or socket.gethostname()
    pid = os.getpid() if pid is None else pid
    return f"{INSTANCE_PREFIX}{host[:40]}:{pid}"


@dataclasses.dataclass(frozen=True)
class HeartbeatStatus:
    """``stale`` is True when the scheduler never succeeded or not within the limit."""

    stale: bool
    last_ok_at: dt.datetime | None
    last_error: str | None
    last_run_at: dt.datetime | None = None
    host: str | None = None
    pid: int | None = None
    #: Other scheduler processes running at the same time as the newest one: (host, pid) pairs.
    also_running: tuple[tuple[str | None, int | None], ...] = ()


def beat(
    session: Session,
    now: dt.datetime,
    *,
    error: str | None = None,
    name: str = DEFAULT_NAME,
    instance: str | None = None,
) -> None:
    """Record a run at ``now``: successful unless ``error`` is given (flushes; caller commits).

    ``instance`` (see :func:`instance_name`) also beats this process's own row.
    """
    _beat_row(session, now, error, name)
    if instance is not None:
        host, _, pid = instance.removeprefix(INSTANCE_PREFIX).rpartition(":")
        row = _beat_row(session, now, error, instance, host=host, pid=int(pid) if pid.isdigit() else None)
        if row.started_at is None:
            row.started_at = now
        session.execute(
            delete(SchedulerHeartbeat).where(
                SchedulerHeartbeat.name.startswith(INSTANCE_PREFIX),
                SchedulerHeartbeat.last_run_at < now - INSTANCE_KEEP,
            )
        )
        session.flush()


def forget(session: Session, instance: str) -> None:
    """Remove a stopping process's own row (flushes; caller commits)."""
    session.execute(delete(SchedulerHeartbeat).where(SchedulerHeartbeat.name == instance))


def _beat_row(
    session: Session, now: dt.datetime, error: str | None, name: str, *, host: str | None = None, pid: int | None = None
) -> SchedulerHeartbeat:
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
    row.host = (host or socket.gethostname())[:255]
    row.pid = os.getpid() if pid is None else pid
    if error:
        row.last_error = error
    else:
        row.last_ok_at = now
        row.last_error = None
    session.flush()
    return row


def also_running(session: Session, now: dt.datetime, within: dt.timedelta) -> tuple[tuple[str | None, int | None], ...]:
    """Scheduler processes that ran at the same time as the newest one, within ``within`` of now.

    Two processes overlap when each ran after the other had started: a restart (the old one
    stopped before the new one began) is not an overlap.
    """
    rows = session.scalars(
        select(SchedulerHeartbeat).where(
            SchedulerHeartbeat.name.startswith(INSTANCE_PREFIX), SchedulerHeartbeat.last_run_at >= now - within
        )
    ).all()
    rows = [r for r in rows if r.started_at is not None]
    if len(rows) < 2:
        return ()
    newest = max(rows, key=lambda r: r.last_run_at)
    overlapping = [
        r
        for r in rows
        if r is not newest
        and r.started_at is not None  # (all are: the filter above; this narrows the type)
        and newest.started_at is not None
        and r.started_at <= newest.last_run_at
        and newest.started_at <= r.last_run_at
    ]
    return tuple((r.host, r.pid) for r in [newest, *overlapping]) if overlapping else ()


def status(session: Session, now: dt.datetime, stale_minutes: int, *, name: str = DEFAULT_NAME) -> HeartbeatStatus:
    """The heartbeat as staff pages show it; a missing row (never ran) is stale."""
    row = session.get(SchedulerHeartbeat, name)
    if row is None:
        return HeartbeatStatus(stale=True, last_ok_at=None, last_error=None)
    window = dt.timedelta(minutes=stale_minutes)
    stale = row.last_ok_at is None or now - row.last_ok_at > window
    return HeartbeatStatus(
        stale=stale,
        last_ok_at=row.last_ok_at,
        last_error=row.last_error,
        last_run_at=row.last_run_at,
        host=row.host,
        pid=row.pid,
        also_running=also_running(session, now, window),
    )
