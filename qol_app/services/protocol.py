"""The trial protocol as the services see it: instrument registry, schedule, alert rules, settings.

One ``Protocol`` per app, built by ``init_app`` from the app's configuration; services reach it
through :func:`current` (the one place here that looks at the Flask app), so no service reads
``current_app`` itself. The data files are loaded on first use and kept per path (loading the
same files again returns the same objects), so a changed ``QOL_*`` path is picked up and a
typo in a file fails as soon as anything needs it (``qol check`` loads them all).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qol_app.alerts import AlertRuleSet, default_rules_path, load_alert_rules
from qol_app.instruments import Registry, get_registry
from qol_app.scheduling import SCHEDULES_DIR, Schedule, load_schedule

EXTENSION_KEY = "qol_protocol"


@dataclass(frozen=True)
class Protocol:
    """A view over ``settings`` (the app's config): the files it names, loaded once per path."""

    settings: Mapping[str, Any]

    @property
    def questionnaire_dir(self) -> str | None:
        return self.settings.get("QUESTIONNAIRE_DIR") or None

    @property
    def registry(self) -> Registry:
        """The shipped instruments with the site's folder (``QUESTIONNAIRE_DIR``) laid over them."""
        return get_registry(self.questionnaire_dir)

    @property
    def schedule(self) -> Schedule:
        """The protocol schedule (``SCHEDULE_FILE``, default ``conquer.yaml``)."""
        path = self.settings.get("SCHEDULE_FILE") or SCHEDULES_DIR / "conquer.yaml"
        return _load_schedule(str(Path(path).resolve()), self.questionnaire_dir)

    @property
    def alert_rules(self) -> AlertRuleSet:
        """The symptom alert rules (``ALERT_RULES_FILE``, default the shipped CONQUER file)."""
        path = self.settings.get("ALERT_RULES_FILE") or default_rules_path()
        return _load_alert_rules(str(Path(path)), self.questionnaire_dir)


#: Outside an app (scripts, unit tests): the shipped files and no settings.
SHIPPED = Protocol({})


def init_app(app: Any) -> None:
    app.extensions[EXTENSION_KEY] = Protocol(app.config)


def current() -> Protocol:
    """The protocol of the current app, else the shipped one."""
    from flask import current_app, has_app_context

    if has_app_context():
        return current_app.extensions.get(EXTENSION_KEY) or Protocol(current_app.config)
    return SHIPPED


@functools.lru_cache(maxsize=8)
def _load_schedule(path: str, questionnaire_dir: str | None) -> Schedule:
    """Instrument ids are checked against the registry: a typo stops the process at start-up."""
    return load_schedule(path, known_instruments=set(get_registry(questionnaire_dir)))


@functools.lru_cache(maxsize=4)
def _load_alert_rules(path: str, questionnaire_dir: str | None) -> AlertRuleSet:
    """Rules checked against the item ids of the instrument they name (a typo fails loudly here)."""
    instrument = get_registry(questionnaire_dir).get(load_alert_rules(path).instrument)
    return load_alert_rules(path, known_items=set(instrument.item_ids))
