"""Operations commands: ``qol check`` (is this configuration safe?) and ``qol backup``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

LABELS = {"error": "ERROR  ", "warning": "WARNING", "ok": "ok     "}


@click.command("check")
@click.option("--production", is_flag=True, help="Check as production would (as with QOL_ENV=production).")
@click.option("--no-database", is_flag=True, help="Skip the database checks (reachable, migrations at head).")
@with_appcontext
def check(production: bool, no_database: bool) -> None:
    """Validate the configuration; exit 1 if anything is wrong.

    In production (QOL_ENV=production, or --production) unsafe settings are errors: a missing or
    well-known secret key, cookies without Secure, log-only mail or SMS backends, a base URL that is
    not https://, debug on, a schedule file whose version is not the one the database was planned
    with (run `qol schedule apply`). Elsewhere they are warnings. Data files (instruments, schedule,
    alert rules) must load, and the database must answer and be at the newest migration.
    """
    from qol_app.config import is_production
    from qol_app.services import alerts, timepoints
    from qol_app.services import responses as svc
    from qol_app.services.config_check import check_config, data_files

    config = current_app.config
    production = production or is_production(config)
    findings = check_config(config, production=production)
    findings += data_files(
        {
            "QUESTIONNAIRE_DIR": svc.registry,
            "SCHEDULE_FILE": lambda: timepoints.configured_schedule(config),
            "ALERT_RULES_FILE": alerts.rule_set,
        }
    )
    if not no_database:
        findings += _database_findings(config, "error" if production else "warning")
    click.echo(f"qol check ({'production' if production else 'development'} rules)")
    for finding in findings:
        click.echo(f"{LABELS[finding.level]} {finding.setting}: {finding.message}")
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    click.echo(f"{errors} error(s), {warnings} warning(s)")
    if errors:
        sys.exit(1)


def _database_findings(config, unsafe: str):
    from qol_app import auth
    from qol_app.db import db
    from qol_app.migrations import head_revisions
    from qol_app.services import timepoints
    from qol_app.services.config_check import Finding, schedule_finding
    from qol_app.services.health import readiness

    checks = readiness(db.session, auth.now(), heads=head_revisions(), stale_minutes=1)
    db.session.rollback()
    # The scheduler heartbeat is /readyz's business: `qol check` runs before the scheduler starts.
    findings = [Finding("ok" if c.ok else "error", "DATABASE_URL", f"{c.name}: {c.detail}") for c in checks[:2]]
    if all(c.ok for c in checks[:2]):
        try:
            schedule = timepoints.configured_schedule(config)
        except Exception:  # noqa: BLE001 - a schedule that does not load is already reported above
            return findings
        findings.append(schedule_finding(schedule.version_label, timepoints.schedule_in_force(db.session), unsafe))
        db.session.rollback()
    return findings


@click.command("backup")
@click.argument("destination", type=click.Path(path_type=Path), required=False)
@click.option("--force", is_flag=True, help="Replace DESTINATION if it exists.")
@with_appcontext
def backup(destination: Path | None, force: bool) -> None:
    """Back up the SQLite database while the app runs (SQLite's online backup API).

    DESTINATION is a file, or a folder for qol-<UTC time>.sqlite (default: instance/backups/).
    The copy is checked (PRAGMA integrity_check) before it gets its name. For PostgreSQL use
    pg_dump, as the README's "Backups" section shows.
    """
    from qol_app import auth
    from qol_app.services.backup import BackupError, backup_sqlite, default_name, sqlite_path

    url = current_app.config["DATABASE_URL"]
    if not url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)
        click.echo(
            "qol backup copies SQLite databases; for PostgreSQL use pg_dump, e.g.\n"
            f"  pg_dump --format=custom --file=qol-$(date -u +%Y%m%dT%H%M%SZ).dump '{libpq}'\n"
            "and see the README's Backups section for restoring with pg_restore.",
            err=True,
        )
        sys.exit(2)
    if destination is None:
        destination = Path(current_app.instance_path) / "backups"
    if destination.is_dir() or str(destination).endswith("/"):
        destination = destination / default_name(auth.now())
    try:
        result = backup_sqlite(sqlite_path(url), destination, overwrite=force)
    except BackupError as exc:
        click.echo(f"backup failed: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"backup written to {result.path} ({result.bytes / 1e6:.1f} MB, {result.audit_events} audit events, "
        f"{result.seconds:.1f} s); integrity check ok"
    )
