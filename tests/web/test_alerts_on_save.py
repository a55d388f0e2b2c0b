"""Alert rules on every stored diary answer: a saved page, a staff entry, a staff correction, the Send.

One alert per form: its level only rises (audited), the Send never raises a second one, a changed
triggering answer is recorded on the alert instead of withdrawing it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from qol_app.models import Alert, AuditEvent, OutboxMessage
from qol_app.services import responses
from qol_app.services.audit import Actor
from tests.factories import STAFF_PASSWORD, isolated_client, send_page, sign_in

DIARY = "symptom_diary"
CALM = {
    "temperature": 36.8,
    "chills": 0,
    "headache": 0,
    "neck_stiffness": 0,
    "nausea": 0,
    "vomiting": 0,
    "back_pain": 0,
    "vision": 0,
    "new_weakness": 0,
    "bladder_bowel": 0,
    "confusion": 0,
    "seizure": 0,
    "ommaya_site": 0,
}


def _diary(session, factory, now):
    site = factory.site()
    nurse = factory.staff("nurse", [site], email="nurse@example.org")
    enrolled = factory.patient(site, pin=None)
    tp = factory.timepoint(enrolled, instruments=[DIARY], respondent="self")
    actor = Actor("patient", str(enrolled.patient.id))
    texts = responses.localized(session, responses.registry().get(DIARY), enrolled.patient.language)
    return enrolled, nurse, tp, actor, responses.start_response(session, actor, tp, texts, now)


def _alerts(session, patient_id):
    return session.scalars(select(Alert).where(Alert.patient_id == patient_id)).all()


def test_a_saved_page_with_a_seizure_raises_red_at_once(session, factory, now):
    enrolled, nurse, _tp, actor, response = _diary(session, factory, now)
    saved = responses.save_page(session, actor, response, ["seizure"], {"seizure": 1}, now)
    assert saved.call_now and saved.unanswered == []
    (alert,) = _alerts(session, enrolled.patient.id)
    assert (alert.level, alert.source, alert.response_id) == ("red", "saved_not_sent", response.id)
    assert response.status == "in_progress"
    queued = session.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.kind == "alert")).all()
    assert f"alert:{alert.id}:{nurse.id}:email" in queued
    # Saving the same answers again changes nothing and does not send the patient to the call page again.
    again = responses.save_page(session, actor, response, ["seizure"], {"seizure": 1}, now)
    assert not again.call_now and len(_alerts(session, enrolled.patient.id)) == 1


def test_amber_rises_to_red_once_and_the_send_adds_no_second_alert(session, factory, now):
    enrolled, _nurse, _tp, actor, response = _diary(session, factory, now)
    first = responses.save_page(session, actor, response, ["nausea"], {"nausea": 3}, now)
    assert not first.call_now
    (alert,) = _alerts(session, enrolled.patient.id)
    assert (alert.level, alert.initial_level) == ("amber", "amber")
    later = now + dt.timedelta(minutes=2)
    second = responses.save_page(session, actor, response, ["confusion"], {"confusion": 1}, later)
    assert second.call_now
    (alert,) = _alerts(session, enrolled.patient.id)
    assert (alert.level, alert.initial_level) == ("red", "amber")
    assert {r["id"] for r in alert.rules} >= {"red_confusion"}
    rose = session.scalar(select(AuditEvent).where(AuditEvent.action == "raise_alert_level"))
    assert rose is not None and rose.old["level"] == "amber" and rose.new["level"] == "red"
    result = responses.submit(session, actor, response, enrolled.patient, later)
    assert result.alert is not None and result.alert.id == alert.id
    (alert,) = _alerts(session, enrolled.patient.id)
    assert alert.source == "saved_not_sent" and alert.level == "red"
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "raise_alert")) == 1


def test_a_changed_trigger_keeps_the_alert_and_shows_the_change(session, factory, now):
    enrolled, _nurse, _tp, actor, response = _diary(session, factory, now)
    responses.save_page(session, actor, response, ["seizure"], {"seizure": 1}, now)
    responses.save_page(session, actor, response, ["seizure"], {"seizure": 0}, now)
    (alert,) = _alerts(session, enrolled.patient.id)
    assert (alert.level, alert.triggering_answers, alert.changed_answers) == ("red", {"seizure": 1}, {"seizure": 0})
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "alert_answers_changed")) is not None
    responses.submit(session, actor, response, enrolled.patient, now)
    assert len(_alerts(session, enrolled.patient.id)) == 1


def test_staff_entry_raises_one_alert_marked_as_staff_entry(session, factory, now):
    enrolled, nurse, tp, _actor, _response = _diary(session, factory, now)
    result = responses.enter_on_behalf(
        session,
        nurse,
        tp,
        DIARY,
        CALM | {"temperature": 38.5},
        now,
        mode="interview",
        respondent="self",
        completed_on=tp.window_start,
    )
    (alert,) = _alerts(session, enrolled.patient.id)
    assert result.alert.id == alert.id and (alert.level, alert.source) == ("red", "staff_entry")


def test_a_correction_is_checked_and_updates_the_forms_one_alert(session, factory, now):
    enrolled, nurse, _tp, actor, response = _diary(session, factory, now)
    responses.save_page(session, actor, response, list(CALM), CALM, now)
    responses.submit(session, actor, response, enrolled.patient, now)
    assert _alerts(session, enrolled.patient.id) == []
    later = now + dt.timedelta(hours=1)
    fixed = responses.correct_response(session, nurse, response, {"seizure": 1}, "told on the phone", later)
    (alert,) = _alerts(session, enrolled.patient.id)
    assert (alert.level, alert.source, alert.response_id) == ("red", "correction", fixed.id)
    assert session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "alert")) >= 1
    again = responses.correct_response(session, nurse, fixed, {"seizure": 0}, "mis-heard", later)
    (alert,) = _alerts(session, enrolled.patient.id)
    assert alert.level == "red" and alert.changed_answers == {"seizure": 0} and again.revision == 2


def test_the_patient_sees_the_call_page_right_after_the_red_page(app, session, factory, now):
    site = factory.site(emergency_phone="120", contact_phone="010-5555")
    factory.staff("nurse", [site], email="n@example.org")
    enrolled = factory.patient(site, language="en")
    tp = factory.timepoint(enrolled, instruments=[DIARY], respondent="self")
    session.commit()
    client = isolated_client(app)
    sign_in(client, enrolled.token)
    # p4 holds confusion, seizure and the Ommaya site.
    base = f"/p/t/{tp.id}/{DIARY}"
    page_no = next(
        n
        for n, plan in enumerate(responses.page_plan(responses.registry().get(DIARY), enrolled.patient), 1)
        if "seizure" in plan.item_ids
    )
    posted = send_page(client, f"{base}/{page_no}", {"confusion": 0, "seizure": 1, "ommaya_site": 0})
    assert posted.status_code == 302 and posted.headers["Location"].endswith(f"/p/t/{tp.id}/call")
    page = client.get(posted.headers["Location"]).get_data(as_text=True)
    assert 'href="tel:120"' in page and "Seizure" in page and f'href="/p/t/{tp.id}"' in page
    assert 'href="/p/"' in page
    (alert,) = _alerts(session, enrolled.patient.id)
    assert alert.source == "saved_not_sent"
    # The nurse's patient page says the answers were saved but not sent.
    app.config["WTF_CSRF_ENABLED"] = False  # the staff sign-in form is not under test here
    nurse_client = isolated_client(app)
    nurse = factory.staff("nurse", [site], username="nurse-sees")
    session.commit()
    signed = nurse_client.post("/staff/login", data={"username": nurse.username, "password": STAFF_PASSWORD})
    assert signed.status_code == 302
    shown = nurse_client.get(f"/staff/patients/{enrolled.patient.id}").get_data(as_text=True)
    assert "saved, not sent" in shown
