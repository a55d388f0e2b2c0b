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
    command.upgrade(alembic_config(url), revision)
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
@with_appcontext
def audit_verify() -> None:
    """Recompute the audit hash chain; exit 1 and list rows that were edited or deleted."""
    from qol_app.db import db
    from qol_app.services.audit import verify

    problems = verify(db.session)
    if problems:
        for problem in problems:
            click.echo(problem.message)
        click.echo(f"audit trail: {len(problems)} problem(s) found")
        sys.exit(1)
    click.echo("audit trail: intact")


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
