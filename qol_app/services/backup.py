"""Online backup of a SQLite database (``qol backup``); PostgreSQL uses ``pg_dump`` (see README).

SQLite's backup API copies the database in one step under a read transaction: in WAL mode the
app and the scheduler keep writing meanwhile, and the copy is the database as of one instant, so
everything committed before the backup started is in it and the audit chain in it is whole.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sqlite3
from pathlib import Path


class BackupError(Exception):
    """The backup could not be made or did not check out; nothing was left at the destination."""


@dataclasses.dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    audit_events: int
    seconds: float


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///...`` URL; ``BackupError`` for anything else."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        raise BackupError(f"not a SQLite database file: {parsed.render_as_string(hide_password=True)}")
    return Path(parsed.database)


def default_name(now: dt.datetime) -> str:
    return f"qol-{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}.sqlite"


def backup_sqlite(source: Path, dest: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the live database ``source`` to ``dest`` (a new file), then check the copy.

    The copy is written beside ``dest`` and renamed into place only after ``PRAGMA
    integrity_check`` passed and it was flushed to disk, so a half-written backup never carries
    the final name. Raises :class:`BackupError` (source missing, destination exists, check failed).
    """
    import time

    started = time.perf_counter()
    if not source.is_file():
        raise BackupError(f"{source} does not exist")
    if dest.exists() and not overwrite:
        raise BackupError(f"{dest} exists already (use --force to replace it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=30)  # only reads; a read-only open can fail on a WAL file
    try:
        out = sqlite3.connect(partial)
        try:
            src.backup(out)  # pages=-1: one step, one consistent snapshot
            out.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
            problems = [row[0] for row in out.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise BackupError(f"the copy failed its integrity check: {'; '.join(problems[:5])}")
            try:
                events = out.execute("SELECT count(*) FROM audit_events").fetchone()[0]
            except sqlite3.OperationalError:
                events = 0
        finally:
            out.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup of {source} failed: {exc}") from exc
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, dest)
    return BackupResult(dest, dest.stat().st_size, events, time.perf_counter() - started)
