"""Call tasks through the nurse pages: on the work list until an outcome is recorded (who, when,
what, audited); each outcome; closed windows shown as such; the scheduler never sends them.
Also the patient page's message history and the dashboard's delivery warnings."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from qol_app.models import AuditEvent, OutboxMessage, Timepoint
from qol_app.notify.channels import DeliveryError
from qol_app.scheduler.jobs import run_sweep
from qol_app.services import treatment_events
from qol_app.services.audit import Actor
from tests.db.conftest import RecordingChannel
from tests.factories import login, no_csrf

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


@pytest.fixture
def world(app, session, factory):
    """A nurse (Chinese UI), a patient with a phone, and the sys-c1 call task created by a sweep."""
    no_csrf(app)
    site = factory.site(code="CT1")
    nurse = factory.staff("nurse", sites=[site], language="zh_Hans")
    english = factory.staff("nurse", sites=[site], language="en")
    patient = factory.patient(
        site, arm="B", randomization_date=dt.date(2026, 3, 2), phone="138 0000 0002", email="p@example.org", pin=None
    ).patient
    treatment_events.record_event(
        session,
        Actor("staff", str(nurse.id)),
        patient,
        kind="systemic_cycle",
        date=dt.date(2026, 3, 3),
        now=dt.datetime(2026, 3, 20, 4, 0, tzinfo=dt.UTC),
    )
    session.commit()
    tp = session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id, Timepoint.key == "sys-c1")).one()
    at = tp.closes_at - D + H
    recorder = RecordingChannel()
    report = run_sweep(app, at, channels={"sms": recorder, "email": recorder})
    assert report.ok, report.errors
    task = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "call_task")).one()
    app.config["FROZEN_NOW"] = at + H
    return {"nurse": nurse, "english": english, "patient": patient, "tp": tp, "task": task, "at": at + H}


def _call_url(w) -> str:
    return f"/staff/patients/{w['patient'].id}/calls/{w['task'].id}"


def test_call_task_is_on_the_work_list_in_each_nurses_language(client, world):
    w = world
    login(client, w["nurse"])
    page = client.get("/staff/").get_data(as_text=True)
    assert _call_url(w) in page and f"致电 {w['patient'].study_id}" in page and "尚未完成" in page
    client.post("/staff/logout")
    login(client, w["english"])
    page = client.get("/staff/").get_data(as_text=True)
    assert f"Call {w['patient'].study_id}" in page and "form not completed yet" in page
    call = client.get(_call_url(w)).get_data(as_text=True)
    assert 'href="tel:13800000002"' in call and "mailto:p@example.org" in call and "After cycle 1" in call


@pytest.mark.parametrize("outcome", ["will_answer", "too_ill", "done_by_phone", "no_answer", "wrong_number"])
def test_each_outcome_closes_the_task_with_who_and_when(app, client, session, world, outcome):
    w = world
    login(client, w["nurse"])
    response = client.post(_call_url(w), data={"outcome": outcome, "note": "spoke to her daughter"})
    assert response.status_code == 302
    session.expire_all()
    task = session.get(OutboxMessage, w["task"].id)
    assert (task.status, task.outcome, task.outcome_by, task.outcome_at) == ("done", outcome, w["nurse"].id, w["at"])
    assert task.outcome_note == "spoke to her daughter"
    (event,) = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "call_outcome").order_by(AuditEvent.id)
    ).all()
    assert (event.actor_type, event.actor_id, event.entity_id) == ("staff", str(w["nurse"].id), str(task.id))
    assert event.new["outcome"] == outcome and event.occurred_at == w["at"]
    tp = session.get(Timepoint, w["tp"].id)
    if outcome == "too_ill":
        assert (tp.missed_reason, tp.missed_reason_by) == ("too_ill", w["nurse"].id)
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "missed_reason")).one().entity_id == str(
            tp.id
        )
    else:
        assert tp.missed_reason is None
    if outcome == "done_by_phone":
        target = response.headers["Location"]
        assert target.endswith(
            f"/staff/patients/{w['patient'].id}/timepoints/{tp.id}/enter/{tp.instruments[0]}?mode=interview"
        )
        entry = client.get(target).get_data(as_text=True)
        (mode,) = re.findall(
            r'<input[^>]*name="entry_mode"[^>]*checked[^>]*>|<input checked[^>]*name="entry_mode"[^>]*>', entry
        )
        assert 'value="interview"' in mode
    else:
        assert response.headers["Location"].endswith("/staff/#worklist")
    # Off the list; the patient page keeps the record.
    assert _call_url(w) not in client.get("/staff/").get_data(as_text=True)
    page = client.get(f"/staff/patients/{w['patient'].id}").get_data(as_text=True)
    assert w["nurse"].full_name in page
    # A second outcome (another nurse, a double tap) changes nothing.
    again = client.post(_call_url(w), data={"outcome": "wrong_number"}, follow_redirects=True)
    assert again.status_code == 200
    session.expire_all()
    assert session.get(OutboxMessage, w["task"].id).outcome == outcome
    assert (
        len(
            session.scalars(select(AuditEvent).where(AuditEvent.action == "call_outcome").order_by(AuditEvent.id)).all()
        )
        == 1
    )


def test_unknown_outcome_is_refused_with_a_message(client, session, world):
    login(client, world["english"])
    response = client.post(_call_url(world), data={"outcome": "sent"})
    assert response.status_code == 200 and "Not a valid choice" in response.get_data(as_text=True)
    session.expire_all()
    assert session.get(OutboxMessage, world["task"].id).status == "open"


def test_open_task_stays_after_the_window_closes_and_is_never_sent(app, client, session, world):
    w = world
    later = w["tp"].closes_at + 2 * H
    report = run_sweep(app, later, channels={"sms": RecordingChannel(), "email": RecordingChannel()})
    assert report.ok and "sent" not in (report.steps.get("outbox") or {})
    session.expire_all()
    assert session.get(OutboxMessage, w["task"].id).status == "open"
    app.config["FROZEN_NOW"] = later
    login(client, w["english"])
    page = client.get("/staff/").get_data(as_text=True)
    assert _call_url(w) in page and "window closed" in page
    assert "The window has closed" in client.get(_call_url(w)).get_data(as_text=True)


def test_other_sites_nurse_cannot_see_or_close_the_task(app, client, session, factory, world):
    stranger = factory.staff("nurse", sites=[factory.site(code="CT2")])
    login(client, stranger)
    assert client.get(_call_url(world)).status_code == 404
    assert client.post(_call_url(world), data={"outcome": "no_answer"}).status_code == 404
    session.expire_all()
    assert session.get(OutboxMessage, world["task"].id).status == "open"


def test_patient_page_lists_messages_and_dashboard_lists_failures(app, client, session, world):
    w = world

    class Broken:
        def deliver(self, message):
            raise DeliveryError("alibaba isv.MOBILE_NUMBER_ILLEGAL: 非法手机号", permanent=True, code="x")

    morning = w["tp"].closes_at - D + 9 * H  # 08:00 local on the last day: the r2 catch-up is due
    email = RecordingChannel()
    run_sweep(app, morning, channels={"sms": Broken(), "email": email})
    app.config["FROZEN_NOW"] = morning
    login(client, w["english"])
    page = client.get(f"/staff/patients/{w['patient'].id}").get_data(as_text=True)
    assert 'href="tel:13800000002"' in page and "mailto:p@example.org" in page
    assert "isv.MOBILE_NUMBER_ILLEGAL" in page and "Failed" in page and "after a failed delivery" in page
    assert "Sent (accepted by the gateway)" in page
    dashboard = client.get("/staff/").get_data(as_text=True)
    section = dashboard[dashboard.index('id="failed"') : dashboard.index('id="missing"')]
    assert w["patient"].study_id in section and "isv.MOBILE_NUMBER_ILLEGAL" in section
    app.config["FROZEN_NOW"] = morning + 8 * D
    login(client, w["english"])  # the old session has long been idle
    dashboard = client.get("/staff/").get_data(as_text=True)
    section = dashboard[dashboard.index('id="failed"') : dashboard.index('id="missing"')]
    assert "isv.MOBILE_NUMBER_ILLEGAL" not in section and "No failed deliveries." in section


def test_dashboard_warns_when_a_production_server_only_logs(app, client, world):
    login(client, world["english"])
    app.debug = False
    app.config.update(MAIL_BACKEND="outbox", SMS_BACKEND="outbox")
    assert "NOT reaching anyone" in client.get("/staff/").get_data(as_text=True)
    app.config.update(MAIL_BACKEND="smtp", SMS_BACKEND="outbox")
    page = client.get("/staff/").get_data(as_text=True)
    assert "NOT reaching anyone" in page and "only logs sms messages" in page
    app.config.update(MAIL_BACKEND="smtp", SMS_BACKEND="webhook", SMS_WEBHOOK_URL="https://relay.example/sms")
    assert "NOT reaching anyone" not in client.get("/staff/").get_data(as_text=True)
    app.config.update(MAIL_BACKEND="outbox", SMS_BACKEND="outbox")
    app.debug = True
    assert "NOT reaching anyone" not in client.get("/staff/").get_data(as_text=True)
