"""``qol scheduler``: run the background process, one sweep, or look at its heartbeat."""

from __future__ import annotations

import logging
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

#: Exit status when another scheduler holds the lock (EX_TEMPFAIL: "try again later").
EXIT_LOCKED = 75


def _logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group("scheduler", invoke_without_command=True)
@click.option("--once", is_flag=True, help="Run one sweep and exit (for cron-style deployments).")
@click.option("--wait", is_flag=True, help="If another scheduler holds the lock, wait for it instead of exiting.")
@click.option(
    "--interval",
    type=click.IntRange(min=5),
    default=None,
    help="Seconds between sweeps (default SCHEDULER_INTERVAL_SECONDS or 60).",
)
@click.pass_context
@with_appcontext
def scheduler_group(ctx: click.Context, once: bool, wait: bool, interval: int | None) -> None:
    """Run the scheduler: status sweep, reminders, outbox and alert escalation.

    Only one scheduler runs per database (PostgreSQL advisory lock; for SQLite a lease row in the
    database); a second one exits with status 75 unless --wait.
    Run exactly one, as its own process: never inside the web workers.
    """
    if ctx.invoked_subcommand is not None:
        return
    from qol_app.scheduler import LockHeld, LockLost, run_forever, run_once
    from qol_app.scheduler.process import DEFAULT_INTERVAL_SECONDS

    _logging()
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy, typed as Flask
    try:
        if once:
            report = run_once(app, wait=wait)
            click.echo(report.summary())
            if not report.ok:
                sys.exit(1)
        else:
            run_forever(
                app,
                wait=wait,
                interval_seconds=interval
                or int(app.config.get("SCHEDULER_INTERVAL_SECONDS") or DEFAULT_INTERVAL_SECONDS),
            )
    except LockHeld as exc:
        click.echo(f"{exc}; exiting. Use --wait to wait for it.", err=True)
        sys.exit(EXIT_LOCKED)
    except LockLost as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@scheduler_group.command("status")
@with_appcontext
def scheduler_status() -> None:
    """Show the heartbeat: last successful run, last error, host and pid; exit 1 when stale."""
    from qol_app.db import db
    from qol_app.scheduler.jobs import clock
    from qol_app.services.heartbeat import status

    stale_minutes = int(current_app.config.get("SCHEDULER_STALE_MINUTES") or 30)
    beat = status(db.session, clock(current_app), stale_minutes)
    when = beat.last_ok_at.isoformat(timespec="seconds") if beat.last_ok_at else "never"
    click.echo(f"last successful sweep: {when}" + (f" on {beat.host} (pid {beat.pid})" if beat.host else ""))
    if beat.last_error:
        click.echo(f"last error: {beat.last_error}")
    click.echo(f"STALE: no successful sweep in the last {stale_minutes} minutes" if beat.stale else "ok")
    if beat.stale:
        sys.exit(1)


@scheduler_group.command("reconcile")
@with_appcontext
def scheduler_reconcile() -> None:
    """Reconcile every patient's timepoints with the schedule (after editing the schedule file)."""
    from qol_app.db import db
    from qol_app.scheduler.jobs import clock
    from qol_app.services.timepoints import reconcile_all

    _logging()
    result = reconcile_all(db.session, clock(current_app), full=True, checkpoint=db.session.commit)
    db.session.commit()
    click.echo(f"reconciled {result.patients} patient(s): {result.changes.changed} change(s)")
    for error in result.errors:
        click.echo(f"error: {error}", err=True)
    if result.errors:
        sys.exit(1)
