"""One scheduler per database: a PostgreSQL advisory lock, or a lease row for SQLite.

APScheduler keeps its jobs in memory and cannot coordinate processes, so a second
``qol scheduler`` (a second host, a cron run overlapping a long one) must not start. The
jobs are idempotent anyway; the lock keeps them from doing everything twice.

* PostgreSQL: ``pg_try_advisory_lock`` on a dedicated autocommit connection held for the
  life of the process. The server drops the lock when that connection dies, so a crashed
  scheduler never leaves a stale lock; :meth:`SchedulerLock.check` notices a lost connection
  and the process stops rather than run unguarded.
* SQLite: a lease row in the database itself (``scheduler_leases``), so two installs with
  different instance folders on one database file still run one scheduler. The holder renews it
  before every sweep and every third of its lifetime (``SCHEDULER_LEASE_SECONDS``); a crashed
  holder's lease expires and the next scheduler takes over. Renewal that fails (the lease
  expired and another scheduler took it) counts as a lost lock: the process stops.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
import zlib
from typing import Self

from flask import Flask
from sqlalchemy import delete, insert, or_, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from qol_app.db import utcnow
from qol_app.models import SchedulerLease

log = logging.getLogger("qol_app.scheduler")
_LEASES = SchedulerLease.__table__

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


class LeaseLock(SchedulerLock):
    """A lease row: held while unexpired and renewed; taken over once it has expired."""

    def __init__(self, bind: Engine | Connection, seconds: int = 300, name: str = "scheduler") -> None:
        self.bind = bind
        self.seconds = seconds
        self.name = name
        self.holder = uuid.uuid4().hex
        self.held = False
        self.renew_every = max(1.0, seconds / 3)
        self.description = f"scheduler lease in the database ({seconds}s, renewed every {self.renew_every:g}s)"

    def _transaction(self):
        if isinstance(self.bind, Engine):
            return self.bind.begin()
        return self.bind.begin_nested()  # tests: inside the caller's (rolled back) transaction

    def _conn(self, transaction) -> Connection:
        return transaction if isinstance(transaction, Connection) else transaction.connection

    def try_acquire(self) -> bool:
        now = utcnow()
        values = {
            "holder": self.holder,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "acquired_at": now,
            "expires_at": now + dt.timedelta(seconds=self.seconds),
        }
        try:
            with self._transaction() as transaction:
                conn = self._conn(transaction)
                taken = conn.execute(
                    update(_LEASES)
                    .where(
                        _LEASES.c.name == self.name,
                        or_(_LEASES.c.holder == self.holder, _LEASES.c.expires_at <= now),
                    )
                    .values(**values)
                ).rowcount
                if not taken:
                    exists = conn.execute(select(_LEASES.c.name).where(_LEASES.c.name == self.name)).first()
                    if exists is not None:
                        return False
                    conn.execute(insert(_LEASES).values(name=self.name, **values))
        except IntegrityError:  # another scheduler inserted the first lease at the same moment
            return False
        self.held = True
        return True

    def check(self) -> bool:
        """Renew the lease; False when it is no longer ours (expired and taken, or unreachable)."""
        if not self.held:
            return False
        now = utcnow()
        try:
            with self._transaction() as transaction:
                renewed = (
                    self._conn(transaction)
                    .execute(
                        update(_LEASES)
                        .where(_LEASES.c.name == self.name, _LEASES.c.holder == self.holder)
                        .values(expires_at=now + dt.timedelta(seconds=self.seconds))
                    )
                    .rowcount
                )
        except Exception:  # noqa: BLE001 - an unreachable database means the lease is not renewed
            log.exception("could not renew the scheduler lease")
            return False
        self.held = bool(renewed)
        return self.held

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            with self._transaction() as transaction:
                self._conn(transaction).execute(
                    delete(_LEASES).where(_LEASES.c.name == self.name, _LEASES.c.holder == self.holder)
                )
        except Exception:  # noqa: BLE001 - it expires by itself
            log.exception("could not release the scheduler lease; it expires in %ss", self.seconds)


def lock_for(app: Flask) -> SchedulerLock:
    """The lock that suits the app's database."""
    ext = app.extensions["qol_db"]
    engine: Engine = ext["engine"]
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine)
    return LeaseLock(ext["bind"], int(app.config.get("SCHEDULER_LEASE_SECONDS") or 300))
