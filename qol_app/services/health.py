"""Readiness: can this node serve? The database answers, its schema is at the newest migration,
the scheduler has swept recently (else reminders and statuses silently stop), and the configured
schedule is the version in force (else no event a nurse records is planned, and the scheduler's
re-planning stops, until ``qol schedule apply``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from qol_app.services import heartbeat, timepoints


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def readiness(
    session: Session,
    now: dt.datetime,
    *,
    heads: Collection[str],
    stale_minutes: int,
    schedule_version: str | None = None,
) -> list[Check]:
    """The checks, in order (database, migrations, scheduler, and with ``schedule_version`` the
    schedule); never raises for a down database.

    ``heads`` is the set of revisions a migrated database is at; ``stale_minutes`` how old the
    scheduler's last successful sweep may be; ``schedule_version`` the configured schedule's
    id@version, compared with the version in force (``timepoints.schedule_in_force``). Reads
    only; the caller ends the transaction.
    """
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        session.rollback()
        orig = getattr(exc, "orig", None)
        reason = str(orig if orig is not None else exc).splitlines()[0][:200]
        return [
            Check("database", False, f"unreachable: {type(exc).__name__}: {reason}"),
            Check("migrations", False, "not checked: no database"),
            Check("scheduler", False, "not checked: no database"),
        ]
    checks = [Check("database", True, "reachable")]
    try:
        current = set(session.scalars(text("SELECT version_num FROM alembic_version")))
    except SQLAlchemyError:
        session.rollback()
        current = set()
    wanted = set(heads)
    if current == wanted:
        checks.append(Check("migrations", True, f"at head {', '.join(sorted(wanted))}"))
    else:
        at = ", ".join(sorted(current)) or "no schema"
        checks.append(Check("migrations", False, f"at {at}, head is {', '.join(sorted(wanted))}: run qol db upgrade"))
    migrated = current == wanted
    try:
        beat = heartbeat.status(session, now, stale_minutes)
    except SQLAlchemyError:
        session.rollback()
        checks.append(Check("scheduler", False, "heartbeat table unreadable"))
        return checks
    if beat.stale:
        last = beat.last_ok_at.isoformat(timespec="seconds") if beat.last_ok_at else "never"
        checks.append(Check("scheduler", False, f"stale: last successful sweep {last}, limit {stale_minutes} min"))
    else:
        checks.append(Check("scheduler", True, f"last successful sweep {beat.last_ok_at:%Y-%m-%dT%H:%M:%SZ}"))
    if schedule_version is not None:
        checks.append(_schedule(session, schedule_version) if migrated else Check("schedule", False, "not checked"))
    return checks


def _schedule(session: Session, configured: str) -> Check:
    try:
        in_force = timepoints.schedule_in_force(session)
    except SQLAlchemyError:
        session.rollback()
        return Check("schedule", False, "schedule tables unreadable")
    if in_force is not None and in_force != configured:
        return Check(
            "schedule",
            False,
            f"configured {configured}, in force {in_force}: run qol schedule apply <file> --effective DATE",
        )
    return Check("schedule", True, f"{configured} in force" if in_force else f"{configured} (nothing planned yet)")
