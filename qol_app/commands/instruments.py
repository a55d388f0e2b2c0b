"""``qol instruments``: list the shipped instruments and import licensed wording."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import with_appcontext


@click.group("instruments")
def instruments_group() -> None:
    """Questionnaire definitions and licensed wording overlays."""


@instruments_group.command("list")
@with_appcontext
def list_instruments() -> None:
    """Show each instrument, its version, languages and the wording in use per language."""
    from sqlalchemy import select

    from qol_app.db import db
    from qol_app.models import WordingOverlay
    from qol_app.services.responses import registry as configured_registry

    overlays = db.session.scalars(select(WordingOverlay).where(WordingOverlay.active.is_(True))).all()
    active = {(o.instrument_id, o.language): o.wording_version for o in overlays}
    registry = configured_registry()
    for instrument_id in sorted(registry):
        instrument = registry.get(instrument_id)
        langs = sorted(set(instrument.languages) | {lang for (i, lang) in active if i == instrument_id})
        wording = ", ".join(
            f"{lang}: {active.get((instrument_id, lang), instrument.wording_version)}" for lang in langs
        )
        click.echo(f"{instrument_id} {instrument.version} — {wording}")


@instruments_group.command("import-wording")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", "imported_by", default=None, help="Who imports it (for the audit trail).")
@with_appcontext
def import_wording(file: Path, imported_by: str | None) -> None:
    """Load a site's licensed official wording (one instrument, one language) from FILE."""
    from qol_app.auth import now
    from qol_app.datafile import DataFileError
    from qol_app.db import db
    from qol_app.services.audit import Actor
    from qol_app.services.responses import registry
    from qol_app.services.wording import import_overlay

    try:
        row = import_overlay(
            db.session,
            Actor("system", imported_by or "cli"),
            file,
            now=now(),
            imported_by=imported_by,
            registry=registry(),
        )
    except (DataFileError, ValueError) as exc:
        click.echo(f"not imported: {exc}", err=True)
        sys.exit(1)
    db.session.commit()
    click.echo(f"{row.instrument_id} {row.language}: wording {row.wording_version} is now active")
