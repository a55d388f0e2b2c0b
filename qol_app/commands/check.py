"""``qol check``: load the questionnaires, the schedule and the alert rules as the app will, and say so."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("check")
@with_appcontext
def check() -> None:
    """Check the configured questionnaires, schedule file and alert rules (exit 1 on any error).

    Run it before going live and after changing QOL_SCHEDULE_FILE, QOL_ALERT_RULES_FILE or
    QOL_QUESTIONNAIRE_DIR: the scheduler and the web app load the same files.
    """
    from qol_app.config import is_production
    from qol_app.services import alerts, responses, timepoints

    problems = 0
    steps = (
        ("questionnaires", lambda: f"{len(list(responses.registry()))} instrument(s)"),
        ("schedule", lambda: _schedule(timepoints.configured_schedule())),
        ("alert rules", lambda: f"{len(alerts.rule_set().rules)} rule(s)"),
    )
    for name, load in steps:
        try:
            click.echo(f"{name}: ok ({load()})")
        except Exception as exc:  # noqa: BLE001 - every load error is reported the same way
            problems += 1
            click.echo(f"{name}: ERROR {exc}", err=True)
    env = "production" if is_production(current_app.config) else "development (QOL_ENV is not production)"
    click.echo(f"environment: {env}")
    if problems:
        sys.exit(1)


def _schedule(schedule) -> str:
    return f"{schedule.id} from {schedule.source}, {len(schedule.rules)} rule(s)"
