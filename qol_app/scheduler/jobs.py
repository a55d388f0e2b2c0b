"""The sweep job: thin, idempotent calls into the services, one commit per step.

Order matters a little: extend plans first (new rows get a status), then statuses (so only
open windows get reminders), then queue reminders (retiring those of moved or closed windows
first), then send (a failed reminder falls back to the next channel), then alert escalation.
Call tasks are never sent: they wait on the nurses' list for an outcome. A failing
step is rolled back, logged and recorded in the heartbeat; later steps still run, because
statuses and sending are worth doing even if, say, one patient's plan is broken.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask

from qol_app.db import db, utcnow
from qol_app.notify.channels import Channel, build_channels
from qol_app.notify.templates import app_renderer
from qol_app.services import heartbeat, notifications, timepoints

log = logging.getLogger("qol_app.scheduler")


@dataclasses.dataclass
class SweepReport:
    now: dt.datetime
    steps: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        parts = [f"sweep at {self.now.isoformat(timespec='seconds')}"]
        for name, value in self.steps.items():
            parts.append(f"{name}: {_describe(value)}")
        parts.append("errors: " + ("; ".join(self.errors) if self.errors else "none"))
        parts.append(f"took {sum(self.seconds.values()):.2f}s")
        return "; ".join(parts)


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "nothing"
    if isinstance(value, timepoints.ReconcileAllResult):
        return f"{value.patients} patient(s), {value.changes.changed} change(s)"
    return str(value) if value is not None else "done"


def forget_instance(app: Flask) -> None:
    """A scheduler stopping cleanly removes its own heartbeat row (a restart is not a second one)."""
    with app.app_context():
        try:
            heartbeat.forget(db.session, heartbeat.instance_name())
            db.session.commit()
        except Exception:  # noqa: BLE001 - the row ages out anyway
            db.session.rollback()
            log.exception("could not remove this scheduler's heartbeat row")


def clock(app: Flask) -> dt.datetime:
    """The scheduler's ``now``: real time, unless tests froze it with ``FROZEN_NOW``."""
    return app.config.get("FROZEN_NOW") or utcnow()


def _escalate_alerts(session, now):
    """Call ``services.alerts.escalate_overdue`` when that module provides it (optional)."""
    try:
        from qol_app.services import alerts
    except ImportError:
        return "not installed"
    escalate = getattr(alerts, "escalate_overdue", None)
    if escalate is None:
        return "not installed"
    return escalate(session, now)


def run_sweep(
    app: Flask,
    now: dt.datetime | None = None,
    *,
    channels: Mapping[str, Channel] | None = None,
) -> SweepReport:
    """One full sweep at ``now`` (default: the clock); safe to run concurrently and repeatedly."""
    with app.app_context():
        session = db.session
        now = now or clock(app)
        report = SweepReport(now)
        settings = notifications.ReminderSettings.from_config(app.config)
        channels = channels if channels is not None else build_channels(app.config)
        render = app_renderer(app)

        def step(name: str, fn: Callable[[], Any]) -> None:
            started = time.perf_counter()
            try:
                report.steps[name] = fn()
                session.commit()
            except Exception as exc:
                session.rollback()
                log.exception("scheduler step %s failed", name)
                report.errors.append(f"{name}: {type(exc).__name__}: {exc}"[:500])
            finally:
                report.seconds[name] = time.perf_counter() - started

        step("reconcile", lambda: timepoints.reconcile_all(session, now, checkpoint=session.commit))
        reconciled = report.steps.get("reconcile")
        if reconciled is not None and reconciled.errors:
            report.errors.append("reconcile: " + "; ".join(reconciled.errors)[:500])
        step("statuses", lambda: timepoints.sweep_statuses(session, now, checkpoint=session.commit))
        step("reminders", lambda: notifications.queue_reminders(session, now, settings, render))
        step(
            "outbox",
            lambda: notifications.send_due(session, now, channels, settings, render=render, checkpoint=session.commit),
        )
        step("alerts", lambda: _escalate_alerts(session, now))
        try:
            heartbeat.beat(
                session, now, error="; ".join(report.errors)[:4000] or None, instance=heartbeat.instance_name()
            )
            session.commit()
        except Exception:
            session.rollback()
            log.exception("could not write the scheduler heartbeat")
        log.info(report.summary())
        return report


def run_export_jobs(app: Flask) -> int:
    """Run the queued exports of the statistician page (services.exports); returns how many ran."""
    from pathlib import Path

    from qol_app.export.run import ExportSettings
    from qol_app.services import exports
    from qol_app.services.responses import registry

    with app.app_context():
        session = db.session
        try:
            return exports.run_pending(
                session,
                Path(app.config["EXPORT_DIR"]),
                settings=ExportSettings.from_config(app.config),
                registry=registry(),
                clock=lambda: clock(app),
            )
        except Exception:
            session.rollback()
            log.exception("export jobs failed")
            return 0
