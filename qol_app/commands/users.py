"""``qol users``: manage staff accounts from the shell (first admin, locked-out staff).

Thin wrappers over ``qol_app.services.staff``; each command commits once and is audited
as the system actor ``cli``.
"""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from qol_app.db import db, utcnow
from qol_app.models import Site, StaffUser
from qol_app.models.staff import ROLES
from qol_app.services import staff as staff_service
from qol_app.services.audit import Actor

ACTOR = Actor.system("cli")


def _user(username: str) -> StaffUser:
    user = staff_service.find_user(db.session, username)
    if user is None:
        raise click.ClickException(f"no staff user {username!r}")
    return user


def _commit(message: str) -> None:
    db.session.commit()
    click.echo(message)


@click.group("users")
def users() -> None:
    """Create, list, disable and manage staff accounts."""


@users.command("create")
@click.argument("username")
@click.option("--name", "full_name", default="", help="Full name shown to colleagues.")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--site", "sites", multiple=True, help="Site code (repeatable).")
@click.option("--language", type=click.Choice(["en", "zh_Hans"]), default="en", show_default=True)
@click.option("--email", default=None)
@click.option("--phone", default=None, help="Mobile phone for SMS alerts, e.g. +8613800000000.")
@click.password_option(prompt="Password", help="At least 12 characters, not a common one; prompted when not given.")
@with_appcontext
def create(
    username: str,
    full_name: str,
    role: str,
    sites: tuple[str, ...],
    language: str,
    email: str | None,
    phone: str | None,
    password: str,
) -> None:
    """Create an account USERNAME."""
    try:
        site_rows = [staff_service.find_site(db.session, code) for code in sites]
        staff_service.create_user(
            db.session,
            ACTOR,
            username=username,
            full_name=full_name,
            role=role,
            password=password,
            email=email,
            phone=phone,
            language=language,
            sites=site_rows,
            now=utcnow(),
        )
    except staff_service.StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    _commit(f"created {role} {username}")


@users.command("list")
@with_appcontext
def list_users() -> None:
    """List accounts: username, role, active, site codes, e-mail, phone."""
    codes = {site.id: site.code for site in db.session.scalars(select(Site))}
    for user in db.session.scalars(select(StaffUser).order_by(StaffUser.username)):
        sites = ",".join(sorted(codes[i] for i in user.site_ids)) or "-"
        state = "active" if user.active else "disabled"
        click.echo(f"{user.username}\t{user.role}\t{state}\t{sites}\t{user.email or '-'}\t{user.phone or '-'}")


@users.command("set-contact")
@click.argument("username")
@click.option("--email", default=None, help="New e-mail ('' clears it); unchanged when not given.")
@click.option("--phone", default=None, help="New mobile phone ('' clears it); unchanged when not given.")
@with_appcontext
def set_contact(username: str, email: str | None, phone: str | None) -> None:
    """Set USERNAME's e-mail and/or mobile phone (where alerts go)."""
    user = _user(username)
    try:
        changed = staff_service.set_contact(
            db.session,
            ACTOR,
            user,
            email=user.email if email is None else email,
            phone=user.phone if phone is None else phone,
            now=utcnow(),
        )
    except staff_service.StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    _commit(f"contact {'updated' if changed else 'unchanged'} for {username}")


@users.command("disable")
@click.argument("username")
@click.option("--reason", required=True)
@with_appcontext
def disable(username: str, reason: str) -> None:
    """Disable USERNAME and end its live sessions at once."""
    staff_service.set_active(db.session, ACTOR, _user(username), False, reason=reason, now=utcnow())
    _commit(f"disabled {username}")


@users.command("enable")
@click.argument("username")
@click.option("--reason", required=True)
@with_appcontext
def enable(username: str, reason: str) -> None:
    """Re-enable USERNAME."""
    staff_service.set_active(db.session, ACTOR, _user(username), True, reason=reason, now=utcnow())
    _commit(f"enabled {username}")


@users.command("set-password")
@click.argument("username")
@click.option("--reason", default="reset from the command line", show_default=True)
@click.password_option(prompt="New password")
@with_appcontext
def set_password(username: str, reason: str, password: str) -> None:
    """Set USERNAME's password (its other sessions end)."""
    try:
        staff_service.set_password(db.session, ACTOR, _user(username), password, reason=reason, now=utcnow())
    except staff_service.StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    _commit(f"password set for {username}")


@users.command("add-site")
@click.argument("username")
@click.argument("site_code")
@with_appcontext
def add_site(username: str, site_code: str) -> None:
    """Give USERNAME access to the site SITE_CODE."""
    try:
        site = staff_service.find_site(db.session, site_code)
    except staff_service.StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    changed = staff_service.add_site(db.session, ACTOR, _user(username), site, now=utcnow())
    _commit(f"{username} {'added to' if changed else 'already at'} {site_code}")


@users.command("remove-site")
@click.argument("username")
@click.argument("site_code")
@click.option("--reason", required=True)
@with_appcontext
def remove_site(username: str, site_code: str, reason: str) -> None:
    """Revoke USERNAME's access to SITE_CODE."""
    try:
        site = staff_service.find_site(db.session, site_code)
    except staff_service.StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    changed = staff_service.remove_site(db.session, ACTOR, _user(username), site, reason=reason, now=utcnow())
    if not changed:
        click.echo(f"{username} is not a member of {site_code}", err=True)
        sys.exit(1)
    _commit(f"{username} removed from {site_code}")


@users.command("reset-2fa")
@click.argument("username")
@click.option("--reason", required=True)
@with_appcontext
def reset_2fa(username: str, reason: str) -> None:
    """Turn off USERNAME's second factor (lost phone); admins set up a new one at their next sign-in."""
    from qol_app.services import two_factor

    changed = two_factor.disable(db.session, ACTOR, _user(username), reason=reason, now=utcnow())
    _commit(f"two-step sign-in {'reset' if changed else 'was not set up'} for {username}")
