"""``qol demo``: a synthetic two-site trial so there is something to see."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("demo")
@click.option("--patients", default=40, show_default=True, help="How many demo patients (both sites, both arms).")
@click.option("--show", default=6, show_default=True, help="How many patient links to print.")
@with_appcontext
def demo(patients: int, show: int) -> None:
    """Fill the database with demo sites, staff, patients, events and forms (idempotent).

    Prints the staff logins and, for a few patients, the personal link and PIN.
    """
    from qol_app.auth import now
    from qol_app.config import is_production
    from qol_app.db import db
    from qol_app.demo import DemoRefused, build

    if is_production(current_app.config):
        raise click.ClickException("QOL_ENV is production: qol demo is refused (demo data and logins are public)")
    try:
        result = build(
            db.session,
            current_app.config["SECRET_KEY"],
            now(),
            n_patients=patients,
            progress=lambda msg: click.echo(msg, err=True),
        )
    except DemoRefused as exc:
        db.session.rollback()
        raise click.ClickException(f"qol demo refused: {exc}") from None
    db.session.commit()
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    click.echo("Demo data " + ("created." if result.created else "already present; nothing changed."))
    click.echo("\nStaff sign-in: " + base + "/staff/login")
    for username, password, role in result.staff:
        line = f"  {role:<13} {username:<14} password: {password}"
        if username in result.totp:
            line += f"  TOTP key: {result.totp[username]} (add it to an authenticator app)"
        click.echo(line)
    click.echo("\nPatients (open the link on a phone-sized window):")
    for p in result.patients[:show]:
        click.echo(
            f"  {p.study_id}  arm {p.arm}  {p.language:<7}  forms due now: {p.due_now}  "
            f"{base}/p/l/{p.token}  PIN {p.pin}"
        )
