"""``qol export``: write an analysis export (zip of datasets + manifest) from the command line."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from qol_app.export.run import FORMATS

_DAY = click.DateTime(["%Y-%m-%d"])


@click.command("export")
@click.option(
    "--format",
    "formats",
    multiple=True,
    required=True,
    metavar="FMT",
    help=f"Repeat or comma-separate: {', '.join(FORMATS)}.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the zip (created if missing).",
)
@click.option("--site", "sites", multiple=True, help="Site code (repeat); default all sites.")
@click.option("--arm", "arms", multiple=True, type=click.Choice(["A", "B"]), help="Arm (repeat); default both.")
@click.option("--instrument", "instruments", multiple=True, help="Instrument id (repeat); default all.")
@click.option("--from", "date_from", type=_DAY, help="Timepoints with target date from this day.")
@click.option("--to", "date_to", type=_DAY, help="... up to this day (inclusive).")
@click.option("--as-of", "as_of", help="ISO 8601 time (UTC unless an offset is given); default now.")
@click.option("--iso-dates", is_flag=True, help="Calendar dates too (needs EXPORT_ISO_DATES enabled by an admin).")
@click.option(
    "--labels",
    type=click.Choice(["en", "zh_Hans"]),
    default="en",
    show_default=True,
    help="Language of variable and value labels.",
)
@click.option("--threshold", type=float, default=10.0, show_default=True, help="Deterioration threshold (points).")
@click.option("--keep-files", is_flag=True, help="Also leave the files unzipped in OUT/<export name>/.")
@with_appcontext
def export(
    formats, out_dir, sites, arms, instruments, date_from, date_to, as_of, iso_dates, labels, threshold, keep_files
) -> None:
    """Export every expected form's scores, items, statuses and patients as of a point in time.

    Writes OUT/conquer_qol_<as-of>.zip (datasets in each format, data dictionary, manifest.json with
    versions, filters and SHA-256 per file) and records the export in the audit trail. Progress goes
    to stderr as a progress bar; the zip's path and SHA-256 to stdout. The same as-of time and options
    give the same bytes.
    """
    from qol_app.auth import now
    from qol_app.db import db
    from qol_app.export.manifest import sha256_file
    from qol_app.export.run import ExportRequest, ExportSettings, count_steps, parse_as_of
    from qol_app.export.source import ExportFilters
    from qol_app.services.audit import Actor
    from qol_app.services.exports import run_export
    from qol_app.services.responses import registry

    at = now()
    try:
        request = ExportRequest(
            formats=tuple(f.strip() for value in formats for f in value.split(",") if f.strip()),
            filters=ExportFilters(
                sites=sites,
                arms=arms,
                instruments=instruments,
                date_from=date_from.date() if date_from else None,
                date_to=date_to.date() if date_to else None,
            ),
            as_of=parse_as_of(as_of) if as_of else at.replace(microsecond=0),
            iso_dates=iso_dates,
            locale=labels,
            threshold=threshold,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    try:
        with click.progressbar(length=count_steps(request), label="Exporting", file=sys.stderr, show_pos=True) as bar:

            def progress(done: int, total: int, what: str) -> None:
                bar.label = f"Exporting {what}"
                bar.update(done - bar.pos)

            result = run_export(
                db.session,
                request,
                out_dir,
                actor=Actor("system", f"cli:{getpass.getuser()}"[:64]),
                now=at,
                settings=ExportSettings.from_config(current_app.config),
                registry=registry(),
                progress=progress,
                keep_files=keep_files,
            )
    except (ValueError, PermissionError) as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"{result.zip_path}  sha256 {sha256_file(result.zip_path)}")
    click.echo(f"{len(result.manifest['files'])} files, as of {result.manifest['as_of']}", err=True)
