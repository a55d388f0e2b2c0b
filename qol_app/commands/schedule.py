"""``qol schedule``: the schedule in force, and protocol amendments (thin over ``services.schedules``)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from qol_app.services.audit import Actor

ACTOR = Actor.system("cli")


@click.group("schedule")
def schedule_group() -> None:
    """Show the protocol schedule; preview and apply amendments from an effective date."""


def _load(path: str):
    from qol_app.datafile import DataFileError
    from qol_app.services.protocol import Protocol

    try:
        return Protocol({**current_app.config, "SCHEDULE_FILE": path}).schedule
    except DataFileError as exc:
        raise click.ClickException(str(exc)) from exc


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc


@schedule_group.command("show")
@with_appcontext
def show() -> None:
    """The configured schedule file (id, version, rules) and the amendments applied so far."""
    from qol_app.db import db
    from qol_app.services import schedules, timepoints

    schedule = timepoints.configured_schedule()
    click.echo(f"schedule {schedule.version_label}: {schedule.title}")
    click.echo(f"  file {schedule.source}")
    for rule in schedule.rules:
        arms = ",".join(sorted(rule.arms))
        click.echo(f"  - {rule.id} ({rule.kind}, anchor {rule.anchor}, arms {arms})")
    rows = schedules.history(db.session)
    if not rows:
        click.echo("no amendment applied: the schedule file alone decides")
    for row in rows:
        click.echo(
            f"amendment {row.version_label} effective {row.effective_date.isoformat()}, applied "
            f"{row.applied_at.isoformat(timespec='minutes')} by {row.applied_by} "
            f"({row.source}, sha256 {row.sha256[:12]})"
        )


def _print(changes, effective: dt.date, verbose: bool) -> None:
    changed = [c for c in changes if c.changed]
    for c in changed:
        parts = []
        for label, keys in (
            ("create", c.create),
            ("move", c.move),
            ("cancel", c.cancel),
            ("not expected", c.not_expected),
            ("reactivate", c.reactivate),
        ):
            if keys:
                parts.append(f"{label} {len(keys)}: {', '.join(keys)}" if verbose else f"{label} {len(keys)}")
        click.echo(f"{c.study_id}: {'; '.join(parts)} (kept before {effective.isoformat()}: {c.kept_past})")
    totals = {
        "create": sum(len(c.create) for c in changes),
        "move": sum(len(c.move) for c in changes),
        "cancel": sum(len(c.cancel) for c in changes),
        "not expected": sum(len(c.not_expected) for c in changes),
        "reactivate": sum(len(c.reactivate) for c in changes),
    }
    kept = sum(c.kept_past for c in changes)
    click.echo(
        f"{len(changed)} of {len(changes)} patients change: "
        + ", ".join(f"{k} {v}" for k, v in totals.items())
        + f"; {kept} timepoints opening before {effective.isoformat()} kept as they are"
    )


@schedule_group.command("diff")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--effective", required=True, help="Effective date of the amendment (YYYY-MM-DD).")
@click.option("--keys/--counts", "verbose", default=True, help="List the timepoint keys (default) or counts only.")
@with_appcontext
def diff_command(file: str, effective: str, verbose: bool) -> None:
    """Show, per patient, what applying FILE from --effective would change (writes nothing)."""
    from qol_app.auth import now
    from qol_app.db import db
    from qol_app.services import schedules

    schedule = _load(file)
    when = _date(effective)
    click.echo(f"amendment to {schedule.version_label} from {when.isoformat()}:")
    _print(schedules.preview(db.session, schedule, when, now()), when, verbose)  # writes nothing


@schedule_group.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--effective", required=True, help="Effective date of the amendment (YYYY-MM-DD).")
@with_appcontext
def apply_command(file: str, effective: str) -> None:
    """Apply FILE from --effective (audited as system:cli); then set QOL_SCHEDULE_FILE to FILE.

    Only timepoints whose window opens on or after the effective date are created, moved or
    cancelled; earlier ones keep their statuses and reasons.
    """
    from qol_app.auth import now
    from qol_app.db import db
    from qol_app.errors import ServiceError
    from qol_app.services import schedules

    schedule = _load(file)
    when = _date(effective)
    try:
        result = schedules.apply(db.session, ACTOR, schedule, when, now(), source=Path(file).resolve())
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    c = result.changes
    click.echo(
        f"applied {schedule.version_label} from {when.isoformat()} to {result.patients} patients: "
        f"created {c.created}, moved {c.moved}, cancelled {c.cancelled}, not expected {c.not_expected}, "
        f"reactivated {c.reactivated}"
    )
    configured = current_app.config.get("SCHEDULE_FILE")
    if not configured or Path(configured).resolve() != Path(file).resolve():
        click.echo(f"now set QOL_SCHEDULE_FILE={Path(file).resolve()} for the web workers and the scheduler")
    for error in result.errors:
        click.echo(f"error: {error}", err=True)
    if result.errors:
        sys.exit(1)
