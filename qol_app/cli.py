"""The ``qol`` command: a Flask CLI group over the app factory, one sub-group per area."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext


def _make_app() -> Flask:
    from qol_app import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_make_app, add_version_option=False)
def main() -> None:
    """CONQUER quality-of-life app: database, demo data, scheduler, exports and more."""


# ---- db -----------------------------------------------------------------------------------
@click.group("db")
def db_group() -> None:
    """Create or migrate the configured database."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Create the database or migrate it to the newest schema (safe to run again)."""
    from alembic import command

    from qol_app.migrations import alembic_config

    url = current_app.config["DATABASE_URL"]
    _ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url, audit_key=current_app.config["AUDIT_KEY"]), revision)
    click.echo(f"database at {_safe_url(url)} is at {revision}")


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (e.g. base)."""
    from alembic import command

    from qol_app.migrations import alembic_config

    command.downgrade(alembic_config(current_app.config["DATABASE_URL"]), revision)


@db_group.command("current")
@with_appcontext
def db_current() -> None:
    """Show the database's migration revision."""
    from alembic import command

    from qol_app.migrations import alembic_config

    command.current(alembic_config(current_app.config["DATABASE_URL"]))


@db_group.command("create-app-role")
@click.argument("role")
@click.option("--password-env", metavar="VAR", help="Set the role's password from this environment variable.")
@click.option("--ask-password", is_flag=True, help="Prompt for the role's password.")
@with_appcontext
def db_create_app_role(role: str, password_env: str | None, ask_password: bool) -> None:
    """PostgreSQL: create (or update) ROLE, the role the app should connect as.

    ROLE is neither owner nor superuser: it reads and writes the application tables, only reads
    the audit tables and appends to the audit trail through the owner's functions, so it cannot
    edit or delete audit rows, move the chain head or disable the append-only trigger. Run this
    as the owner that ran `qol db upgrade` (it needs CREATEROLE too), and again after each
    upgrade so new tables get their grants. Then point QOL_DATABASE_URL at ROLE.
    """
    import os

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from qol_app.services.db_roles import RoleError, grant_app_role

    password = None
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise click.UsageError(f"environment variable {password_env} is empty or not set")
    elif ask_password:
        password = click.prompt("Password for " + role, hide_input=True, confirmation_prompt=True)
    url = current_app.config["DATABASE_URL"]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            report = grant_app_role(conn, role, password=password)
    except RoleError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"role {role} {'created' if report.created else 'updated'}: not owner, not superuser")
    click.echo(f"  read and write: {', '.join(report.read_write)}")
    click.echo(f"  read only: {', '.join(report.read_only)}; audit appends through audit_append()")
    app_url = make_url(url).set(username=role, password="***" if password else None)
    click.echo(f"connect the app as: QOL_DATABASE_URL={app_url.render_as_string(hide_password=False)}")


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ---- audit --------------------------------------------------------------------------------
@click.group("audit")
def audit_group() -> None:
    """Inspect the audit trail."""


@audit_group.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A checkpoint written by `qol audit checkpoint`; the trail must still hold what it covers. Repeatable.",
)
@with_appcontext
def audit_verify(checkpoint_files: tuple[str, ...]) -> None:
    """Recompute the keyed audit chain; exit 1 and list rows that were edited, forged or deleted.

    With --checkpoint, also detect deleting the newest events (or all of them) and restoring an
    older copy of the database, which no check inside the database can see.
    """
    from pathlib import Path

    from qol_app.db import db
    from qol_app.services.audit import Problem, read_checkpoint, verify

    problems: list[Problem] = []
    checkpoints = []
    for name in checkpoint_files:
        try:
            checkpoints.append(read_checkpoint(db.session, Path(name).read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(Problem(None, f"{name}: {exc}"))
    problems += verify(db.session, checkpoints=checkpoints)
    if problems:
        for problem in problems:
            click.echo(problem.message)
        click.echo(f"audit trail: {len(problems)} problem(s) found")
        sys.exit(1)
    suffix = f" (and holds everything in {len(checkpoints)} checkpoint(s))" if checkpoints else ""
    click.echo("audit trail: intact" + suffix)


@audit_group.command("checkpoint")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the checkpoint to this file (kept off the database server). Default: print it.",
)
@with_appcontext
def audit_checkpoint(out: str | None) -> None:
    """Verify the trail, then sign its head (event count, newest hash, time) for safe keeping.

    Store the output away from the database (another machine, the monitor's printed log):
    `qol audit verify --checkpoint FILE` later proves that nothing it covers was removed.
    The checkpoint is also written to the application log.
    """
    from pathlib import Path

    from qol_app.auth import now
    from qol_app.db import db
    from qol_app.services.audit import checkpoint

    made, problems = checkpoint(db.session, now())
    db.session.rollback()
    if made is None:
        for problem in problems:
            click.echo(problem.message, err=True)
        click.echo(f"audit trail: {len(problems)} problem(s) found; no checkpoint written", err=True)
        sys.exit(1)
    current_app.logger.warning("%s", made.summary())
    if out:
        Path(out).write_text(made.to_json(), encoding="utf-8")
        click.echo(made.summary())
        click.echo(f"written to {out}")
    else:
        click.echo(made.to_json(), nl=False)


def register_commands(app: Flask) -> None:
    """Attach every command group; groups live beside the code they drive."""
    from qol_app.commands import COMMANDS

    app.cli.add_command(db_group)
    app.cli.add_command(audit_group)
    for command in COMMANDS:
        app.cli.add_command(command)


def _attach_to_main() -> None:
    """Attach the groups to ``qol`` itself too, so ``qol --help`` lists them even when the app
    cannot be built (a broken configuration is exactly when people read --help)."""
    from qol_app.commands import COMMANDS

    main.add_command(db_group)
    main.add_command(audit_group)
    for command in COMMANDS:
        main.add_command(command)


_attach_to_main()
