"""Service errors in the reader's language: the one place a ``ServiceError`` becomes text.

A :class:`~qol_app.errors.ServiceError` carries an English message id and its parameters; here
the id goes through gettext and each parameter is shown as the reader expects it: dates in their
format, stored codes (event kinds, statuses, roles, reasons) by their translated label. Any
other exception is logged and replaced by a translated generic sentence, so raw English (or
internals) never reaches a page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app
from flask_babel import gettext as _

from qol_app.errors import ServiceError
from qol_app.i18n import local_date, local_datetime, select_locale
from qol_app.labels import EVENT_LABELS, MISSED_REASON_LABELS, MODE_LABELS, ROLE_LABELS, STATUS_LABELS


def _labels() -> dict[str, dict[str, Any]]:
    return {
        "kind": EVENT_LABELS,
        "status": STATUS_LABELS,
        "role": ROLE_LABELS,
        "reason": MISSED_REASON_LABELS,
        "mode": MODE_LABELS,
    }


def _param(name: str, value: Any, labels: dict[str, dict[str, Any]]) -> Any:
    if isinstance(value, dt.datetime):
        return f"{local_datetime(value, 'UTC', select_locale())} UTC"
    if isinstance(value, dt.date):
        return local_date(value, select_locale())
    known = labels.get(name)
    if known is not None and value in known:
        return str(known[value])
    return value


def message(error: BaseException) -> str:
    """``error`` as a sentence in the reader's language."""
    if isinstance(error, ServiceError):
        labels = _labels()
        params = {name: _param(name, value, labels) for name, value in error.params.items()}
        return _(error.msgid, **params)
    current_app.logger.warning("unexpected error shown as a generic message: %r", error)
    return _("This could not be saved: the data given do not fit. Check the values and try again.")
