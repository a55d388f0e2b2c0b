"""A reminder's own link: the personal link's scanner-safe sign-in page (GET changes nothing),
a session only once the PIN is given, straight to the form; dead after the window and after a
newer link."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from qol_app.models import AuditEvent, LoginSession, ReminderLink, Timepoint
from qol_app.scheduler.jobs import run_sweep
from qol_app.services import reminder_links, treatment_events
from qol_app.services.audit import Actor
from tests.db.conftest import RecordingChannel
from tests.factories import hidden_fields, isolated_client

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


@pytest.fixture
def reminded(app, session, factory):
    """A patient with a PIN whose sys-c1 reminders r1 and r2 were sent; returns their tokens."""
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 3, 2), phone="13800000002", pin="424242")
    p = patient.patient
    treatment_events.record_event(
        session,
        Actor("staff", None),
        p,
        kind="systemic_cycle",
        date=dt.date(2026, 3, 3),
        now=dt.datetime(2026, 3, 20, 4, 0, tzinfo=dt.UTC),
    )
    session.commit()
    tp = session.scalars(select(Timepoint).where(Timepoint.patient_id == p.id, Timepoint.key == "sys-c1")).one()
    recorder = RecordingChannel()
    for when in (tp.opens_at + 8 * H, tp.opens_at + 2 * D + 8 * H):
        assert run_sweep(app, when, channels={"sms": recorder}).ok
    tokens = [re.search(r"http://localhost/p/r/([A-Za-z0-9_-]+)", m.body).group(1) for m in recorder.sent]
    assert len(tokens) == 2 and all(len(t) >= 22 for t in tokens)  # 16 random bytes, base64url
    app.config["FROZEN_NOW"] = tp.opens_at + 2 * D + 9 * H
    return {"patient": p, "tp": tp, "r1": tokens[0], "r2": tokens[1], "personal": patient.token}


def _counts(session) -> tuple[int, int]:
    return (
        session.scalar(select(func.count()).select_from(LoginSession)),
        session.scalar(select(func.count()).select_from(AuditEvent)),
    )


def test_link_opens_the_sign_in_page_without_changing_anything(app, session, reminded):
    client = isolated_client(app)
    before = _counts(session)
    for _ in range(3):  # a mail scanner, a link preview, then the patient
        page = client.get(f"/p/r/{reminded['r2']}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert 'name="pin"' in html and "csrf_token" in html
    assert client.get(f"/p/l/{reminded['personal']}").get_data(as_text=True).count('name="pin"') == 1
    session.expire_all()
    assert _counts(session) == before
    link = session.scalars(
        select(ReminderLink).where(ReminderLink.token_hash == reminder_links.token_hash(reminded["r2"]))
    ).one()
    assert link.last_used_at is None
    assert client.get("/p/").status_code in (302, 303)  # still signed out


def test_link_signs_in_only_with_the_pin_and_goes_to_the_form(app, session, reminded):
    client = isolated_client(app)
    url = f"/p/r/{reminded['r2']}"
    token = hidden_fields(client.get(url).get_data(as_text=True))["csrf_token"]
    wrong = client.post(url, data={"csrf_token": token, "pin": "000000"})
    assert wrong.status_code == 200 and "数字密码不对" in wrong.get_data(as_text=True)
    assert client.get("/p/").status_code in (302, 303)
    token = hidden_fields(client.get(url).get_data(as_text=True))["csrf_token"]
    response = client.post(url, data={"csrf_token": token, "pin": "424242"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/p/t/{reminded['tp'].id}")
    assert client.get(response.headers["Location"]).status_code in (200, 302)
    assert client.get("/p/").status_code == 200
    session.expire_all()
    sign_in = session.scalars(select(AuditEvent).where(AuditEvent.action == "sign_in")).one()
    assert sign_in.new == {"via": "reminder_link", "timepoint_id": reminded["tp"].id}
    failed = session.scalars(select(AuditEvent).where(AuditEvent.action == "pin_failed")).one()
    assert failed.patient_id == reminded["patient"].id  # the same PIN throttle as the personal link


def test_an_older_link_stops_when_a_newer_one_is_sent(app, reminded):
    client = isolated_client(app)
    page = client.get(f"/p/r/{reminded['r1']}")
    assert page.status_code == 410
    html = page.get_data(as_text=True)
    assert "这个链接已失效" in html and "最新消息" in html and 'name="pin"' not in html
    assert client.post(f"/p/r/{reminded['r1']}", data={"pin": "424242"}).status_code == 410
    assert client.get("/p/").status_code in (302, 303)


def test_link_stops_after_the_window_grace_end(app, reminded):
    client = isolated_client(app)
    tp = reminded["tp"]
    app.config["FROZEN_NOW"] = tp.grace_closes_at - dt.timedelta(minutes=1)
    assert client.get(f"/p/r/{reminded['r2']}").status_code == 200  # late, still accepted
    app.config["FROZEN_NOW"] = tp.grace_closes_at
    page = client.get(f"/p/r/{reminded['r2']}")
    assert page.status_code == 410 and "填写时间已经结束" in page.get_data(as_text=True)


def test_unknown_or_malformed_link_is_a_friendly_404(app, reminded):
    client = isolated_client(app)
    assert client.get("/p/r/not-a-token").status_code == 404
    assert client.get("/p/r/" + "x" * 300).status_code == 404
    assert client.get(f"/p/r/{reminded['personal']}").status_code == 404  # the personal token is not a reminder's


def test_link_stops_when_the_personal_link_is_reissued(app, session, reminded):
    from qol_app.services import enrolment

    enrolment.rotate_link(
        session, Actor("staff", None), reminded["patient"], reason="card lost", now=app.config["FROZEN_NOW"] + H
    )
    session.commit()
    app.config["FROZEN_NOW"] += 2 * H
    assert isolated_client(app).get(f"/p/r/{reminded['r2']}").status_code == 410
