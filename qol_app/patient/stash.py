"""Answers kept in this browser's session when a page could not be saved (signed out meanwhile).

Only the codes the patient typed on one page are kept, for a few hours, and they are given
back only after the patient who owns that timepoint signs in again: whoever holds the phone
sees nothing they did not type themselves.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from flask import session, url_for

from qol_app import auth
from qol_app.inputs import control_characters

KEY = "kept"
HINT = "p"  # id of the patient who last signed in on this browser
MAX_AGE = dt.timedelta(hours=12)
_ITEM = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_NOT_ANSWERS = {"csrf_token", "confirm_skip", "client_time", "client_offset", "nav"}


def keep(tp_id: object, instrument_id: object, page_no: object, form: Mapping[str, str], now: dt.datetime) -> None:
    if not (isinstance(tp_id, int) and isinstance(instrument_id, str) and isinstance(page_no, int)):
        return
    answers = {
        k: v
        for k, v in list(form.items())[:60]
        if _ITEM.match(k)
        and k not in _NOT_ANSWERS
        and isinstance(v, str)
        and 0 < len(v) <= 16
        and v.strip()
        and not control_characters(v)
    }
    if answers:
        session[KEY] = {"tp": tp_id, "i": instrument_id, "pg": page_no, "a": answers, "at": now.isoformat()}


def has_any() -> bool:
    return _fresh(session.get(KEY)) is not None


def take_all() -> dict | None:
    return session.pop(KEY, None)


def put_back(value: dict | None) -> None:
    if value:
        session[KEY] = value


def _fresh(value: object) -> dict | None:
    if not isinstance(value, dict):
        return None
    try:
        at = dt.datetime.fromisoformat(value["at"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if auth.now() - at <= MAX_AGE else None


def page_for(patient) -> str | None:
    """Where to go after sign-in to get kept answers back (None: nothing kept for this patient)."""
    from qol_app.db import db
    from qol_app.models import Timepoint

    value = _fresh(session.get(KEY))
    if value is None:
        session.pop(KEY, None)
        return None
    tp = db.session.get(Timepoint, value["tp"])
    if tp is None or tp.patient_id != patient.id:
        session.pop(KEY, None)
        return None
    return url_for("patient.page", timepoint_id=tp.id, instrument_id=value["i"], page_no=value["pg"])


def take_for(tp_id: int, instrument_id: str, page_no: int) -> dict[str, str] | None:
    """The kept answers of exactly this page (removed from the session), if any.

    The caller has already checked that the signed-in patient owns the timepoint.
    """
    value = _fresh(session.get(KEY))
    if value is None or (value["tp"], value["i"], value["pg"]) != (tp_id, instrument_id, page_no):
        return None
    session.pop(KEY, None)
    return dict(value["a"])
