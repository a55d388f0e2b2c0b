"""One scheduler per database: a PostgreSQL advisory lock, or a file lock for SQLite.

APScheduler keeps its jobs in memory and cannot coordinate processes, so a second
``qol scheduler`` (a second host, a cron run overlapping a long one) must not start. The
jobs are idempotent anyway; the lock keeps them from doing everything twice.

* PostgreSQL: ``pg_try_advisory_lock`` on a dedicated autocommit connection held for the
  life of the process. The server drops the lock when that connection dies, so a crashed
  scheduler never leaves a stale lock; :meth:`SchedulerLock.check` notices a lost connection
  and the process stops rather than run unguarded.
* SQLite: a ``filelock`` lock file in the instance folder (``SCHEDULER_LOCK_FILE``
  overrides); the OS releases it when the process exits.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Self

import filelock
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

#: Stable 32-bit key derived from a name, so other tools can see who holds it in pg_locks.
ADVISORY_KEY = zlib.crc32(b"qol_app.scheduler")


class LockHeld(RuntimeError):
    """Another scheduler holds the lock."""


class LockLost(RuntimeError):
    """The lock went away while the scheduler ran (e.g. its database connection died)."""


class SchedulerLock:
    description = "scheduler lock"

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def check(self) -> bool:
        """Whether we still hold the lock."""
        return True

    def acquire(self, *, wait: bool = False, poll_seconds: float = 5.0, timeout: float | None = None) -> None:
        """Take the lock, or raise :class:`LockHeld` (at once, or after ``timeout`` when waiting)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_acquire():
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                raise LockHeld(f"another scheduler is running ({self.description} is held)")
            time.sleep(poll_seconds)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class AdvisoryLock(SchedulerLock):
    def __init__(self, engine: Engine, key: int = ADVISORY_KEY) -> None:
        self.engine = engine
        self.key = key
        self.conn: Connection | None = None
        self.description = f"PostgreSQL advisory lock {key}"

    def try_acquire(self) -> bool:
        if self.conn is None:
            # Autocommit: the connection must not sit "idle in transaction" for days.
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = bool(self.conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        if not got:
            self.conn.close()
            self.conn = None
        return got

    def check(self) -> bool:
        if self.conn is None:
            return False
        try:
            return bool(
                self.conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :k "
                        "AND pid = pg_backend_pid() AND granted"
                    ),
                    {"k": self.key},
                ).scalar()
            )
        except Exception:  # noqa: BLE001 - a dead connection means the lock is gone
            return False

    def release(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        except Exception:  # a dead connection has released the lock already
            self.conn.invalidate()
        finally:
            self.conn.close()
            self.conn = None


class FileLock(SchedulerLock):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Not thread-local: the lock is taken in the main thread and checked from job threads.
        self.lock = filelock.FileLock(str(self.path), timeout=0, thread_local=False)
        self.description = f"lock file {self.path}"

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        return True

    def check(self) -> bool:
        return self.lock.is_locked

    def release(self) -> None:
        if self.lock.is_locked:
            self.lock.release(force=True)


def lock_for(app: Flask) -> SchedulerLock:
    """The lock that suits the app's database."""
    engine: Engine = app.extensions["qol_db"]["engine"]
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine)
    path = app.config.get("SCHEDULER_LOCK_FILE") or Path(app.instance_path) / "scheduler.lock"
    return FileLock(path)
