"""Large print: one item per screen, chosen by the patient with one tap (audited) or by staff."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from qol_app.models import Answer, AuditEvent, Patient, Response
from qol_app.services import patient_records
from qol_app.services.audit import Actor
from tests.factories import hidden_fields, isolated_client, login, no_csrf, sign_in

C30 = "eortc_qlq_c30"


@pytest.fixture
def enrolled(factory):
    return factory.patient(pin=None, language="en")


def _client(app, enrolled):
    client = isolated_client(app)
    assert sign_in(client, enrolled.token, pin=None).status_code == 302
    return client


def _switch(client, on: str, next_path: str = "/p/"):
    home = client.get("/p/").get_data(as_text=True)
    token = hidden_fields(home)["csrf_token"]
    return client.post("/p/large-print", data={"csrf_token": token, "on": on, "next": next_path})


def _answers(session, tp):
    session.expire_all()
    response = session.scalar(select(Response).where(Response.timepoint_id == tp.id, Response.instrument_id == C30))
    if response is None:
        return {}
    return {
        a.item_id: (None if a.skipped else a.value)
        for a in session.scalars(select(Answer).where(Answer.response_id == response.id))
    }


def _tap(client, url: str, item_id: str | None, code: int | None):
    """One tap: an answer button (``item_id=code``) or, with ``code`` None, the Next button."""
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    form = re.search(
        r'<form method="post" novalidate id="survey" action="([^"]+)">.*?</form>',
        page.get_data(as_text=True),
        re.DOTALL,
    )
    data = hidden_fields(form.group(0))
    assert data["item"]
    data |= {item_id: str(code)} if code is not None else {"nav": "next"}
    return client.post(form.group(1), data=data)


def test_patient_turns_large_print_on_with_one_tap_audited(app, enrolled, session):
    client = _client(app, enrolled)
    home = client.get("/p/").get_data(as_text=True)
    assert 'action="/p/large-print"' in home and 'class="pt lp"' not in home
    response = _switch(client, "1", "/p/?x=1")
    assert response.status_code == 302 and response.headers["Location"] == "/p/?x=1"
    session.expire_all()
    assert enrolled.patient.display_preferences == {"large_print": True}
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "display_preference"))
    assert event.actor_type == "patient" and event.old == {"large_print": False} and event.new == {"large_print": True}
    assert 'class="pt lp"' in client.get("/p/").get_data(as_text=True)
    _switch(client, "0")
    session.expire_all()
    assert enrolled.patient.display_preferences is None


def test_switch_refuses_a_next_outside_the_patient_pages(app, enrolled):
    client = _client(app, enrolled)
    assert _switch(client, "1", "https://evil.example/").headers["Location"] == "/p/"


def test_one_item_per_screen_one_tap_each_and_back_keeps_the_answer(app, enrolled, factory, session):
    tp = factory.timepoint(enrolled, respondent="self", instruments=[C30])
    client = _client(app, enrolled)
    _switch(client, "1")
    url = f"/p/t/{tp.id}/{C30}/1"
    body = client.get(url).get_data(as_text=True)
    assert body.count('class="answer"') == 4 and "q2" not in re.sub(r"csrf[^>]*>", "", body)
    assert "Page 1 of" in body and 'href="/p/"' in body  # Back from the first item: home
    response = _tap(client, url, "q1", 2)  # one tap on an answer saves it and moves on
    assert response.status_code == 302 and response.headers["Location"] == f"{url}?item=2"
    assert _answers(session, tp) == {"q1": 2}
    second = client.get(f"{url}?item=2").get_data(as_text=True)
    assert f'href="{url}?item=1"' in second  # Back is a link: it posts (and so changes) nothing
    first = client.get(f"{url}?item=1").get_data(as_text=True)
    assert re.search(r'name="q1" value="2" aria-pressed="true"', first)
    # Next past an answered item keeps its answer
    response = _tap(client, f"{url}?item=1", "q1", None)
    assert response.headers["Location"] == f"{url}?item=2"
    assert _answers(session, tp) == {"q1": 2}
    # a changed answer replaces the old one
    _tap(client, f"{url}?item=1", "q1", 3)
    assert _answers(session, tp) == {"q1": 3}


def test_an_item_left_out_is_asked_about_once_then_skipped(app, enrolled, factory, session):
    tp = factory.timepoint(enrolled, respondent="self", instruments=[C30])
    client = _client(app, enrolled)
    _switch(client, "1")
    url = f"/p/t/{tp.id}/{C30}/1"
    response = _tap(client, url, "q1", None)
    assert response.headers["Location"] == f"{url}?item=1&missing=q1"
    assert _answers(session, tp) == {}
    response = _tap(client, f"{url}?item=1&missing=q1", "q1", None)
    assert response.headers["Location"] == f"{url}?item=2"
    assert _answers(session, tp) == {"q1": None}


def test_a_whole_visit_item_by_item_reaches_the_same_review_and_send(app, enrolled, factory, session):
    tp = factory.timepoint(enrolled, respondent="self", instruments=[C30])
    client = _client(app, enrolled)
    _switch(client, "1")
    url, taps = client.get(f"/p/t/{tp.id}").headers["Location"], 0
    while not url.endswith("/submit"):
        item_id = re.search(r'class="answer" name="(q\d+)"', client.get(url).get_data(as_text=True)).group(1)
        url = _tap(client, url, item_id, 1).headers["Location"]
        taps += 1
    assert taps == 30 and url == f"/p/t/{tp.id}/submit"
    assert _answers(session, tp) == {f"q{n}": 1 for n in range(1, 31)}
    # Back from the first item of page 2 goes to the last item of page 1
    page2 = client.get(f"/p/t/{tp.id}/{C30}/2").get_data(as_text=True)
    assert f'href="/p/t/{tp.id}/{C30}/1?item=last"' in page2
    last = client.get(f"/p/t/{tp.id}/{C30}/1?item=last").get_data(as_text=True)
    assert "Question 5 of 5 on this page" in last


def test_staff_set_large_print_on_the_patient_record(enrolled, session, now):
    actor = Actor("staff", "1", None)
    patient_records.update_details(
        session,
        actor,
        enrolled.patient,
        {"display_preferences": {"large_print": True}},
        reason="poor eyesight",
        languages=["en", "zh_Hans"],
        now=now,
    )
    assert patient_records.display_preference(enrolled.patient, "large_print") is True


def test_staff_choose_large_print_at_enrolment_audited(app, factory, session):
    no_csrf(app)
    site = factory.site()
    nurse = factory.staff("nurse", sites=[site])
    staff = isolated_client(app)
    login(staff, nurse)
    assert "pref_large_print" in staff.get("/staff/patients/new").get_data(as_text=True)
    base = {"site_id": site.id, "arm": "A", "randomization_date": "2026-03-01", "language": "en"}
    assert (
        staff.post("/staff/patients/new", data=base | {"study_id": "LP-1", "pref_large_print": "y"}).status_code == 200
    )
    assert staff.post("/staff/patients/new", data=base | {"study_id": "LP-2"}).status_code == 200
    first = session.scalar(select(Patient).where(Patient.study_id == "LP-1"))
    second = session.scalar(select(Patient).where(Patient.study_id == "LP-2"))
    assert first.display_preferences == {"large_print": True} and second.display_preferences is None
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "enroll", AuditEvent.patient_id == first.id))
    assert event.new["display_preferences"] == {"large_print": True}


def test_large_print_from_a_multi_item_page_keeps_what_was_ticked(app, enrolled, factory, session):
    tp = factory.timepoint(enrolled, respondent="self", instruments=[C30])
    client = _client(app, enrolled)
    url = f"/p/t/{tp.id}/{C30}/1"
    page = client.get(url).get_data(as_text=True)
    assert 'form="survey" name="nav" value="large_print"' in page  # the switch belongs to the page's form
    data = hidden_fields(re.search(r'<form method="post" novalidate id="survey".*?</form>', page, re.DOTALL).group(0))
    response = client.post(url, data=data | {"q1": "2", "q2": "3", "nav": "large_print"})
    assert response.status_code == 302 and response.headers["Location"] == url
    assert _answers(session, tp) == {"q1": 2, "q2": 3}  # ticked, saved, nothing else asked
    session.expire_all()
    assert session.get(Patient, enrolled.patient.id).display_preferences.get("large_print") is True
    body = client.get(url).get_data(as_text=True)
    assert body.count('class="answer"') == 4  # now one item per screen
