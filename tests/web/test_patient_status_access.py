"""A patient's status governs access: a withdrawn, dead or lost patient cannot sign in or submit.

Recording the status (through the nurse page, i.e. ``set_patient_status``) ends the patient's
sessions at once; the link then shows only a kind message in the patient's language; forms still
open become not expected (unless the protocol keeps them for staff entry); and a request already
on its way when the status was recorded is refused by the service under the form's lock.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

from qol_app.models import Answer, AuditEvent, LoginSession, Patient, Response, Timepoint
from qol_app.services import responses, treatment_events
from qol_app.services.audit import Actor
from tests.factories import fill_form, isolated_client, login, no_csrf, page_form, sign_in

EQ5D = "eq5d5l"
EQ = {"mo": 1, "sc": 1, "ua": 2, "pd": 1, "ad": 1, "vas": 80}
KIND = "This link is no longer in use"
KIND_ZH = "此链接已停用"


@pytest.fixture
def trial(app, factory, session, now):
    no_csrf(app)
    site = factory.site(contact_phone="021-5555-0101")
    nurse = factory.staff("nurse", sites=[site])
    enrolled = factory.patient(site, language="en", randomization_date=now.date() - dt.timedelta(days=2))
    tp = factory.timepoint(enrolled, instruments=[EQ5D], respondent="self", key="baseline", rule_id="baseline")
    staff = isolated_client(app)
    login(staff, nurse)
    phone = isolated_client(app)
    assert sign_in(phone, enrolled.token).status_code == 302
    return {"enrolled": enrolled, "tp": tp, "staff": staff, "phone": phone, "nurse": nurse}


def _record(trial, status: str, date: str = "2026-03-09"):
    pid = trial["enrolled"].patient.id
    response = trial["staff"].post(
        f"/staff/patients/{pid}/status", data={"status": status, "date": date, "reason": "told by family"}
    )
    assert response.status_code == 302


def _is_kind_message(response, text: str = KIND) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == 410, response.status_code
    assert text in body
    assert 'name="pin"' not in body and "/p/t/" not in body and "died" not in body and "withdrew" not in body


@pytest.mark.parametrize("status", ["died", "withdrawn", "lost"])
def test_an_open_session_ends_when_the_status_is_recorded(session, trial, status):
    phone, tp = trial["phone"], trial["tp"]
    review = fill_form(phone, tp.id, EQ5D, EQ)  # answers saved, not yet sent
    _record(trial, status)
    open_sessions = (
        select(func.count())
        .select_from(LoginSession)
        .where(LoginSession.subject_type == "patient", LoginSession.ended_at.is_(None))
    )
    assert session.scalar(open_sessions) == 0  # ended by recording the status, before any request
    _is_kind_message(phone.get("/p/"))
    page = phone.get(f"/p/t/{tp.id}/{EQ5D}/1")
    _is_kind_message(page)
    _is_kind_message(phone.post(review, data={}))  # cannot send
    _is_kind_message(phone.post(f"/p/t/{tp.id}/{EQ5D}/1", data={"mo": "5"}))  # cannot save
    session.expire_all()
    response = session.scalar(select(Response).where(Response.timepoint_id == tp.id))
    assert response.status == "in_progress" and response.submitted_at is None
    assert session.scalar(select(Answer.value).where(Answer.item_id == "mo")) == 1.0  # the earlier answer, kept
    ended = session.scalars(select(LoginSession).where(LoginSession.subject_type == "patient")).all()
    assert ended and all(s.ended_at is not None and s.end_reason == status for s in ended)


@pytest.mark.parametrize("status", ["died", "withdrawn", "lost"])
def test_the_link_shows_only_a_kind_message(session, trial, status):
    enrolled = trial["enrolled"]
    _record(trial, status)
    fresh = isolated_client(trial["staff"].application)
    _is_kind_message(fresh.get(f"/p/l/{enrolled.token}"))
    before = session.scalar(select(func.count()).select_from(AuditEvent))
    _is_kind_message(fresh.post(f"/p/l/{enrolled.token}", data={"pin": "123456"}))  # even the right PIN
    _is_kind_message(fresh.post(f"/p/l/{enrolled.token}", data={"pin": "000000"}))
    session.expire_all()
    assert session.get(Patient, enrolled.patient.id).pin_failures == 0  # no PIN was even checked
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == before  # no sign-in
    assert "sid" not in (fresh.get_cookie("qol_session").value if fresh.get_cookie("qol_session") else "")


def test_the_kind_message_is_in_the_patients_language(app, session, factory, now):
    no_csrf(app)
    site = factory.site()
    enrolled = factory.patient(site, language="zh_Hans")
    treatment_events.set_patient_status(
        session, Actor.system("t"), enrolled.patient, "died", status_date=now.date(), reason="r", now=now
    )
    page = isolated_client(app).get(f"/p/l/{enrolled.token}")
    _is_kind_message(page, KIND_ZH)
    assert 'lang="zh-Hans"' in page.get_data(as_text=True)


def test_open_forms_become_not_expected_with_the_status_as_reason(session, trial):
    tp = trial["tp"]
    fill_form(trial["phone"], tp.id, EQ5D, EQ)  # started: its answers are kept, the form is no longer due
    factory_tp = trial["tp"]
    _record(trial, "withdrawn", "2026-03-10")
    session.expire_all()
    row = session.get(Timepoint, factory_tp.id)
    assert (row.status, row.not_expected_reason) == ("not_expected", "withdrawn")
    assert session.scalar(select(func.count()).select_from(Answer)) == len(EQ)


def test_a_status_recorded_while_the_request_was_on_its_way(session, trial, now):
    """The page was loaded by an active patient; the status is committed before the save or send runs."""
    enrolled, tp = trial["enrolled"], trial["tp"]
    patient = enrolled.patient
    actor = Actor("patient", str(patient.id))
    texts = responses.localized(session, responses.registry().get(EQ5D), "en")
    response = responses.start_response(session, actor, tp, texts, now)
    responses.save_page(session, actor, response, ["mo"], {"mo": 1}, now)
    session.execute(
        update(Patient)
        .where(Patient.id == patient.id)
        .values(status="died")
        .execution_options(synchronize_session=False)
    )  # behind the back of the objects loaded
    assert patient.status == "active"  # what the request had loaded
    with pytest.raises(responses.PatientInactive):
        responses.save_page(session, actor, response, ["sc"], {"sc": 1}, now)
    with pytest.raises(responses.PatientInactive):
        responses.submit(session, actor, response, patient, now)
    with pytest.raises(responses.PatientInactive):
        responses.set_respondent(session, actor, tp, "proxy", "child", now)
    nurse = Actor("staff", str(trial["nurse"].id))
    responses.save_page(session, nurse, response, ["sc"], {"sc": 1}, now)  # staff may still enter


def test_a_status_written_any_other_way_still_ends_the_session(session, trial):
    """Defence in depth: a session of a patient no longer active is refused on the next request."""
    patient = trial["enrolled"].patient
    session.execute(update(Patient).where(Patient.id == patient.id).values(status="lost"))
    session.commit()
    _is_kind_message(trial["phone"].get("/p/"))
    row = session.scalars(select(LoginSession).where(LoginSession.subject_type == "patient")).one()
    session.refresh(row)
    assert row.end_reason == "lost"


def test_undoing_the_status_lets_the_patient_back_in(session, trial, now):
    enrolled, tp = trial["enrolled"], trial["tp"]
    _record(trial, "lost", "2026-03-10")
    trial["staff"].post(
        f"/staff/patients/{enrolled.patient.id}/status", data={"status": "active", "reason": "entered in error"}
    )
    session.expire_all()
    assert session.get(Timepoint, tp.id).not_expected_reason is None
    phone = isolated_client(trial["staff"].application)
    assert sign_in(phone, enrolled.token).status_code == 302
    review = fill_form(phone, tp.id, EQ5D, EQ)
    page = phone.get(review)
    assert phone.post(review, data=page_form(page.get_data(as_text=True))).status_code == 302


def test_the_protocol_may_keep_open_forms_for_staff_entry(app, session, trial, monkeypatch):
    """``open_forms_at_end: staff_entry``: the form stays expected and staff can enter the paper copy,
    but the patient is still signed out and cannot send it."""
    import dataclasses

    from qol_app.services import timepoints

    schedule = dataclasses.replace(timepoints.configured_schedule(), open_forms_at_end="staff_entry")
    monkeypatch.setattr(timepoints, "configured_schedule", lambda config=None: schedule)
    enrolled, tp = trial["enrolled"], trial["tp"]
    _record(trial, "died", "2026-03-10")
    session.expire_all()
    assert session.get(Timepoint, tp.id).not_expected_reason is None
    _is_kind_message(trial["phone"].get(f"/p/t/{tp.id}/{EQ5D}/1"))
    entered = trial["staff"].post(
        f"/staff/patients/{enrolled.patient.id}/timepoints/{tp.id}/enter/{EQ5D}",
        data={"entry_mode": "paper_transcribed", "entry_respondent": "self", **{k: str(v) for k, v in EQ.items()}},
    )
    assert entered.status_code == 302
    session.expire_all()
    assert session.scalar(select(Response.status).where(Response.timepoint_id == tp.id)) == "submitted"
