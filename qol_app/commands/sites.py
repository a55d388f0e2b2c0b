"""``qol sites``: add, list and change trial sites from the shell (thin over ``services.sites``)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from qol_app.services.audit import Actor

ACTOR = Actor.system("cli")


@click.group("sites")
def sites_group() -> None:
    """Add, list and change trial sites."""


@sites_group.command("add")
@click.argument("code")
@click.option("--name", required=True, help="Site name shown to staff.")
@click.option("--timezone", "timezone", required=True, help="IANA time zone, e.g. Asia/Shanghai.")
@click.option("--language", "default_language", default="zh_Hans", show_default=True, help="Patients' default.")
@click.option("--emergency-phone", required=True, help="Number shown with red alerts, e.g. 120.")
@click.option("--phone", "contact_phone", default=None, help="The study team's phone (optional).")
@with_appcontext
def add(code: str, name: str, timezone: str, default_language: str, emergency_phone: str, contact_phone: str | None):
    """Add the site CODE (audited as system:cli)."""
    from qol_app.auth import now
    from qol_app.db import db
    from qol_app.errors import ServiceError
    from qol_app.services import sites

    try:
        site = sites.create_site(
            db.session,
            ACTOR,
            code=code,
            name=name,
            timezone=timezone,
            default_language=default_language,
            emergency_phone=emergency_phone,
            contact_phone=contact_phone,
            languages=current_app.config["LANGUAGES"],
            now=now(),
        )
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"added site {site.code} ({site.name}, {site.timezone})")


@sites_group.command("list")
@with_appcontext
def list_sites() -> None:
    """List sites: code, time zone, language, emergency number, study phone, name."""
    from qol_app.db import db
    from qol_app.services import sites

    for site in sites.list_sites(db.session):
        click.echo(
            f"{site.code}\t{site.timezone}\t{site.default_language}\t{site.emergency_phone}\t"
            f"{site.contact_phone or '-'}\t{site.name}"
        )


@sites_group.command("update")
@click.argument("code")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--code", "new_code", default=None, help="A new site code.")
@click.option("--name", default=None)
@click.option("--timezone", default=None, help="IANA time zone; re-plans the site's patients' forms not yet started.")
@click.option("--language", "default_language", default=None)
@click.option("--emergency-phone", default=None)
@click.option("--phone", "contact_phone", default=None, help="The study team's phone ('' removes it).")
@with_appcontext
def update(code: str, reason: str, new_code: str | None, **values: str | None) -> None:
    """Change the site CODE; only the options given change."""
    from qol_app.auth import now
    from qol_app.db import db
    from qol_app.errors import ServiceError
    from qol_app.services import locks, sites

    site = sites.find_site(db.session, code)
    if site is None:
        raise click.ClickException(f"no site with code {code!r}")
    changes = {k: v for k, v in values.items() if v is not None}
    if new_code is not None:
        changes["code"] = new_code
    try:
        if "timezone" in changes and changes["timezone"] != site.timezone:
            locks.check_unlocked(db.session, now(), site_id=site.id)
        changed = sites.update_site(
            db.session, ACTOR, site, changes, reason=reason, languages=current_app.config["LANGUAGES"], now=now()
        )
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"site {site.code}: " + (", ".join(f"{k} changed" for k in changed) if changed else "nothing changed"))
