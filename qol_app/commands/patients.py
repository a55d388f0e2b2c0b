"""``qol patients enrol``: enrol a patient from the shell and print the personal link and PIN once."""

from __future__ import annotations

import datetime as dt

import click
from flask import current_app
from flask.cli import with_appcontext

from qol_app.services.audit import Actor


@click.group("patients")
def patients_group() -> None:
    """Enrol patients from the command line (sites without the web page yet, scripted go-live checks)."""


@patients_group.command("enrol")
@click.argument("study_id")
@click.option("--site", "site_code", required=True, help="Site code.")
@click.option("--arm", type=click.Choice(["A", "B"]), required=True)
@click.option("--randomized", "randomized", type=click.DateTime(["%Y-%m-%d"]), required=True, help="YYYY-MM-DD")
@click.option("--language", default=None, help="The patient's language (default: the site's).")
@click.option("--consent", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Consent date, YYYY-MM-DD.")
@click.option("--timezone", default=None, help="The patient's own IANA zone (default: the site's).")
@click.option("--phone", default=None, help="Mobile phone for reminders.")
@click.option("--email", default=None, help="E-mail for reminders.")
@click.option("--no-pin", is_flag=True, help="The link alone opens the forms.")
@click.option("--by", "by", default="cli", show_default=True, help="Who enrols (for the audit trail).")
@with_appcontext
def enrol(
    study_id: str,
    site_code: str,
    arm: str,
    randomized: dt.datetime,
    language: str | None,
    consent: dt.datetime | None,
    timezone: str | None,
    phone: str | None,
    email: str | None,
    no_pin: bool,
    by: str,
) -> None:
    """Enrol STUDY_ID at a site, plan its first forms, and print its personal link and PIN (shown once)."""
    from qol_app.auth import now
    from qol_app.db import db
    from qol_app.errors import ServiceError
    from qol_app.services import enrolment, locks, sites, timepoints

    site = sites.find_site(db.session, site_code)
    if site is None:
        raise click.ClickException(f"no site with code {site_code!r} (add it with: qol sites add)")
    language = language or site.default_language
    if language not in current_app.config["LANGUAGES"]:
        raise click.ClickException(f"language must be one of {', '.join(current_app.config['LANGUAGES'])}")
    if timezone is not None and not sites.valid_timezone(timezone):
        raise click.ClickException(f"unknown IANA time zone {timezone!r}")
    at = now()
    actor = Actor("system", by[:64])
    try:
        locks.check_unlocked(db.session, at, site_id=site.id)
        enrolled = enrolment.enroll_patient(
            db.session,
            actor,
            study_id=study_id.strip(),
            site=site,
            arm=arm,
            randomization_date=randomized.date(),
            consent_date=consent.date() if consent else None,
            language=language,
            timezone=timezone,
            email=email,
            phone=phone,
            with_pin=not no_pin,
            now=at,
        )
        planned = timepoints.reconcile_patient(db.session, actor, enrolled.patient, at, reason="enrolled")
    except ServiceError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    from qol_app.nurse.cards import personal_link

    with current_app.test_request_context():  # url_for needs a request; the link's base is PUBLIC_BASE_URL
        link = personal_link(enrolled.token)
    click.echo(f"enrolled {enrolled.patient.study_id} at {site.code}, arm {arm}; {planned.created} form(s) planned")
    click.echo(f"personal link (shown once): {link}")
    click.echo(f"PIN: {enrolled.pin}" if enrolled.pin else "PIN: none")
