"""A staff-entered form kept in this browser when it could not be saved (signed out meanwhile).

A nurse transcribing a long paper form may take longer than the session or the page's token
lives. The posted fields are kept in the (signed) session cookie for a few hours, for that page
only, and given back when the same staff member (or, when the ended session is unknown, any
staff member allowed to open that form) signs in again and opens it: nothing is saved until
they press Save again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import g, session
from werkzeug.datastructures import MultiDict

from qol_app import auth
from qol_app.inputs import control_characters

KEY = "staff_kept"
MAX_AGE = dt.timedelta(hours=12)
MAX_FIELDS = 120
_NOT_KEPT = {"csrf_token"}


def keep(path: str, form: MultiDict[str, Any], now: dt.datetime) -> bool:
    """Keep what was posted to ``path``; False when there was nothing worth keeping."""
    fields = [
        (k, v)
        for k, v in form.items(multi=True)
        if k not in _NOT_KEPT and isinstance(v, str) and len(k) <= 64 and len(v) <= 300 and not control_characters(v)
    ][:MAX_FIELDS]
    if not fields:
        return False
    expired = g.get("expired_subject")
    staff_id = expired[1] if expired and expired[0] == "staff" else None
    session[KEY] = {"path": path, "staff": staff_id, "fields": fields, "at": now.isoformat()}
    return True


def take_all() -> dict | None:
    """Everything kept (removed from the session), to carry across a sign-in (which clears it)."""
    return session.pop(KEY, None)


def put_back(value: dict | None, staff_id: int) -> None:
    """Keep it again after ``staff_id`` signed in, if it was theirs (or nobody's in particular)."""
    if value and value.get("staff") in (None, staff_id):
        session[KEY] = value


def take_for(path: str) -> MultiDict | None:
    """The fields kept for ``path`` (removed from the session), if fresh."""
    value = session.get(KEY)
    if not isinstance(value, dict) or value.get("path") != path:
        return None
    session.pop(KEY, None)
    try:
        fresh = auth.now() - dt.datetime.fromisoformat(value["at"]) <= MAX_AGE
    except (KeyError, TypeError, ValueError):
        return None
    return MultiDict([tuple(pair) for pair in value.get("fields", [])]) if fresh else None
