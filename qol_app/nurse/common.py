"""Helpers shared by the staff views: the request's clock and actor, template functions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, g
from flask_babel import gettext as _

from qol_app import auth, policy
from qol_app.i18n import local_date, local_datetime, select_locale
from qol_app.labels import (
    CALL_OUTCOME_LABELS,
    CHANNEL_LABELS,
    DISPLAY_MODE_LABELS,
    EVENT_LABELS,
    MESSAGE_STATUS_LABELS,
    MISSED_REASON_LABELS,
    MODE_LABELS,
    RESPONDENT_LABELS,
    ROLE_LABELS,
    STATUS_LABELS,
    group_label,
    timepoint_label,
)
from qol_app.nurse import bp
from qol_app.security import current_actor

__all__ = ["auth", "current_actor", "now"]


def now() -> dt.datetime:
    return auth.now()


def _fmt_dt(value: dt.datetime | None, tz: str | None = None) -> str:
    if value is None:
        return ""
    return local_datetime(value, tz or "UTC", select_locale())


def _fmt_date(value: dt.date | None) -> str:
    return "" if value is None else local_date(value, select_locale())


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _alert_reasons(alert) -> str:
    """The alert's triggered rules in the reader's language (rule id when a text is missing)."""
    from qol_app.services.alerts import rule_set

    rules, locale, out = rule_set(), select_locale(), []
    for entry in alert.rules or []:
        rule_id = entry["id"] if isinstance(entry, dict) else str(entry)  # stored rules always carry an id
        try:
            out.append(rules.rule(rule_id).description(locale))
        except KeyError:
            out.append(rule_id)
    return "; ".join(out)


def _alert_source(alert) -> str:
    """Where the alert's answers came from, in words: above all, saved answers not sent (yet)."""
    if alert.source == "saved_not_sent":
        if alert.response is not None and alert.response.status == "submitted":
            return str(_("raised from saved answers before sending; sent since"))
        return str(_("saved, not sent: the patient has not pressed Send"))
    if alert.source == "staff_entry":
        return str(_("entered by staff"))
    if alert.source == "correction":
        return str(_("raised by a staff correction"))
    return str(_("sent by the patient"))


def _alert_changes(alert) -> str:
    """The triggering answers changed since the alert: "seizure 1 → 0"."""
    skipped = str(_("skipped"))
    parts = []
    for item_id, now_value in sorted((alert.changed_answers or {}).items()):
        before = (alert.triggering_answers or {}).get(item_id)
        after = skipped if now_value == "skipped" else f"{now_value:g}" if isinstance(now_value, float) else now_value
        parts.append(f"{item_id} {before} → {after}")
    return "; ".join(parts)


def _instrument_names() -> dict[str, str]:
    """Instrument id -> its short name in the reader's language (the id when that language has none).

    Short: the part before a parenthesis ("EORTC QLQ-C30 (core ...)" -> "EORTC QLQ-C30"), so
    action buttons stay small on a tablet.
    """
    from qol_app.services.responses import registry

    reg, locale = registry(), select_locale()
    names = {i: reg.get(i).name.get(locale, i) for i in reg}
    return {i: name.split(" (")[0].split("（")[0] for i, name in names.items()}


def _schedulers_at_once() -> tuple:
    """Scheduler processes running at the same time (empty when there is one, as there should be)."""
    from qol_app.db import db
    from qol_app.services.heartbeat import also_running

    if g.get("staff") is None:
        return ()
    window = dt.timedelta(minutes=current_app.config["SCHEDULER_STALE_MINUTES"])
    return also_running(db.session, now(), window)


@bp.app_context_processor
def _staff_layout_helpers() -> dict[str, Any]:
    """For nurse/layout.html, which the statistician's pages extend too."""
    return {"schedulers_at_once": _schedulers_at_once}


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "can": lambda action, obj=None: policy.can(g.get("staff"), action, obj),
        "fmt_dt": _fmt_dt,
        "fmt_date": _fmt_date,
        "pct": _pct,
        "alert_reasons": _alert_reasons,
        "alert_source": _alert_source,
        "alert_changes": _alert_changes,
        "instrument_names": _instrument_names(),
        "EVENT_LABELS": EVENT_LABELS,
        "CALL_OUTCOME_LABELS": CALL_OUTCOME_LABELS,
        "CHANNEL_LABELS": CHANNEL_LABELS,
        "MESSAGE_STATUS_LABELS": MESSAGE_STATUS_LABELS,
        "MISSED_REASON_LABELS": MISSED_REASON_LABELS,
        "MODE_LABELS": MODE_LABELS,
        "DISPLAY_MODE_LABELS": DISPLAY_MODE_LABELS,
        "RESPONDENT_LABELS": RESPONDENT_LABELS,
        "ROLE_LABELS": ROLE_LABELS,
        "STATUS_LABELS": STATUS_LABELS,
        "group_label": group_label,
        "timepoint_label": timepoint_label,
        "staff_languages": current_app.config["LANGUAGES"],
    }
