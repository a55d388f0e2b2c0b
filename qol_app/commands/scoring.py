"""``qol rescore``: recompute all stored scores."""

from __future__ import annotations

import click
from flask.cli import with_appcontext


@click.command("rescore")
@click.option("--batch", default=2000, show_default=True, help="Forms read per database round trip.")
@with_appcontext
def rescore(batch: int) -> None:
    """Recompute every stored score from the stored answers and report how many changed (audited)."""
    from qol_app.auth import now
    from qol_app.db import db
    from qol_app.services.audit import Actor
    from qol_app.services.rescoring import rescore_all
    from qol_app.services.responses import registry

    def progress(done: int) -> None:
        click.echo(f"\r{done} forms rescored", nl=False, err=True)

    result = rescore_all(
        db.session, Actor.system("rescore"), now(), batch=batch, progress=progress, registry=registry()
    )
    db.session.commit()
    click.echo("", err=True)
    click.echo(
        f"{result.forms} forms rescored: {result.changed_forms} changed ({result.changed_scores} scores), "
        f"{result.failed_forms} could not be scored"
    )
