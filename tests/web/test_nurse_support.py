"""Shared helpers for the staff-side tests (no tests here): sign-in, timepoint and alert builders."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from qol_app.models import Alert, Answer, Response, Timepoint
from qol_app.scheduling.timewindows import day_after_start, local_day_start
from tests.factories import STAFF_PASSWORD

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def no_csrf(app) -> None:
    """Most staff tests post forms directly; CSRF itself is covered by its own test."""
    app.config["WTF_CSRF_ENABLED"] = False


def totp_code(client, secret: str) -> str:
    """The code an authenticator app shows at the app's (frozen) clock."""
    import pyotp

    return pyotp.TOTP(secret).at(client.application.config["FROZEN_NOW"])


def login(client, user) -> None:
    """Sign in through the real pages, with the second factor when the account has one."""
    response = client.post("/staff/login", data={"username": user.username, "password": STAFF_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    if response.headers["Location"].endswith("/staff/login/code"):
        from sqlalchemy.orm import object_session

        # Each code is accepted once; with a frozen clock, forget the last one so tests may sign in again.
        user.totp_last_step = None
        object_session(user).flush()
        response = client.post("/staff/login/code", data={"code": totp_code(client, user.totp_secret)})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]


def csrf_token(client, path: str) -> str:
    body = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(body)
    assert match, f"no CSRF token on {path}"
    return match.group(1) or match.group(2)


def add_timepoint(
    session,
    patient,
    key: str,
    *,
    status: str,
    target: dt.date,
    kind: str = "questionnaire",
    rule_id: str | None = None,
    before: int = 3,
    after: int = 3,
    grace: int = 3,
    completed_at: dt.datetime | None = None,
    started_at: dt.datetime | None = None,
    missed_reason: str | None = None,
    missed_reason_text: str | None = None,
    not_expected_reason: str | None = None,
    instruments=("eortc_qlq_c30",),
) -> Timepoint:
    """A timepoint row built by hand (window in the patient's zone), independent of the planner."""
    tz = ZoneInfo(patient.tz)
    start, end = target - dt.timedelta(days=before), target + dt.timedelta(days=after)
    if kind == "diary":
        start = end = target
        grace = 1
    tp = Timepoint(
        patient_id=patient.id,
        key=key,
        rule_id=rule_id or {"questionnaire": key.split("-")[0], "diary": "nadir_diary"}[kind],
        kind=kind,
        instruments=list(instruments if kind == "questionnaire" else ("symptom_diary",)),
        anchor_kind="randomization",
        anchor_date=target,
        target_date=target,
        window_start=start,
        window_end=end,
        grace_end=end + dt.timedelta(days=grace),
        opens_at=local_day_start(start, tz),
        closes_at=day_after_start(end, tz),
        grace_closes_at=day_after_start(end + dt.timedelta(days=grace), tz),
        status=status,
        completed_at=completed_at,
        started_at=started_at,
        missed_reason=missed_reason,
        missed_reason_text=missed_reason_text,
        not_expected_reason=not_expected_reason,
    )
    session.add(tp)
    session.flush()
    return tp


def add_response(
    session, tp, *, respondent: str = "self", mode: str = "web", at: dt.datetime, answers: dict | None = None
) -> Response:
    """A submitted revision 0 of the timepoint's first instrument; ``answers``: item -> value (None:
    an explicit skip)."""
    response = Response(
        timepoint_id=tp.id,
        patient_id=tp.patient_id,
        instrument_id=tp.instruments[0],
        instrument_version="3.0",
        revision=0,
        language="zh_Hans",
        wording_version="own",
        respondent=respondent,
        mode=mode,
        status="submitted",
        started_at=at,
        submitted_at=at,
    )
    session.add(response)
    session.flush()
    for item, value in (answers or {}).items():
        session.add(Answer(response_id=response.id, item_id=item, value=value, skipped=value is None, answered_at=at))
    session.flush()
    return response


def add_alert(session, patient, *, level: str = "red", at: dt.datetime) -> Alert:
    alert = Alert(
        patient_id=patient.id,
        level=level,
        initial_level=level,
        rules=[{"id": "seizure"}],
        triggering_answers={"seizure": 1},
        raised_at=at,
    )
    session.add(alert)
    session.flush()
    return alert
