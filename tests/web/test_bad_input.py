"""Inputs that used to give HTTP 500: each now gives a clear 4xx or the form again, and loses nothing.

Found by an adversarial pass (issue 18): ``sNaN`` as a temperature, a blank device offset, an
empty PIN to set, a blank alert action, control characters in ``next`` (see test_open_redirect),
ids or ``page`` of 10**20, a NUL in any text field (PostgreSQL cannot store one), and a
whitespace-only phone number that was stored.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from qol_app.inputs import MAX_DB_INT
from qol_app.models import Alert, Answer, AuditEvent, Patient, Response
from tests.factories import add_alert, add_timepoint, isolated_client, login, no_csrf, page_form, sign_in

HUGE = 10**20
DIARY = "symptom_diary"


@pytest.fixture
def world(app, factory, session):
    no_csrf(app)
    site = factory.site()
    nurse = factory.staff("nurse", sites=[site])
    enrolled = factory.patient(site, pin=None, language="en")
    diary = factory.timepoint(enrolled, instruments=[DIARY], respondent="self")
    staff = isolated_client(app)
    login(staff, nurse)
    patient = isolated_client(app)
    assert sign_in(patient, enrolled.token, pin=None).status_code == 302
    return {"site": site, "nurse": nurse, "enrolled": enrolled, "diary": diary, "staff": staff, "patient": patient}


def _stored(session, tp_id):
    session.expire_all()
    return dict(
        session.execute(select(Answer.item_id, Answer.value).join(Response).where(Response.timepoint_id == tp_id)).all()
    )


@pytest.mark.parametrize("value", ["sNaN", "NaN", "-nan", "Infinity", "-inf", "1e999999", "37.5\x00"])
def test_a_temperature_that_is_not_a_number_re_renders_the_page(session, world, value):
    url = f"/p/t/{world['diary'].id}/{DIARY}/1"
    page = world["patient"].get(url)
    response = world["patient"].post(
        url, data=page_form(page.get_data(as_text=True)) | {"temperature": value, "chills": "1"}
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'value="1" checked' in body or 'checked value="1"' in body or "checked" in body  # the typed answer is kept
    assert _stored(session, world["diary"].id) == {}


def test_the_same_temperature_on_the_staff_entry_form(session, world):
    enrolled, tp = world["enrolled"], world["diary"]
    url = f"/staff/patients/{enrolled.patient.id}/timepoints/{tp.id}/enter/{DIARY}"
    response = world["staff"].post(
        url, data={"entry_mode": "paper_transcribed", "entry_respondent": "self", "temperature": "sNaN", "chills": "1"}
    )
    assert response.status_code == 422 and "sNaN" in response.get_data(as_text=True)  # shown again to correct
    assert _stored(session, tp.id) == {}


@pytest.mark.parametrize("offset", [" ", "\t", "+", "99999", "1e3", "١٢"])
def test_an_odd_device_clock_is_dropped_not_a_failure(session, world, offset):
    url = f"/p/t/{world['diary'].id}/{DIARY}/1"
    page = world["patient"].get(url)
    data = page_form(page.get_data(as_text=True)) | {"chills": "0", "client_offset": offset, "client_time": " "}
    assert world["patient"].post(url, data=data).status_code == 302
    response = session.scalar(select(Response).where(Response.timepoint_id == world["diary"].id))
    session.refresh(response)
    assert response.client_utc_offset_minutes is None and response.client_time is None
    assert _stored(session, world["diary"].id) == {"chills": 0.0, "temperature": None}  # optional: a skip


def test_setting_an_empty_pin_is_refused_with_a_message(session, world):
    enrolled = world["enrolled"]
    for pin in ("", "   "):
        response = world["staff"].post(
            f"/staff/patients/{enrolled.patient.id}/pin", data={"action": "set", "pin": pin, "reason": "lost card"}
        )
        assert response.status_code == 422  # the patient page again, with the message
        assert "Enter the PIN to set." in response.get_data(as_text=True)
    session.refresh(enrolled.patient)
    assert enrolled.patient.pin_hash is None
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "set_pin")) == 0


@pytest.mark.parametrize("action", ["", "   ", "\t\n", "\x00"])
def test_a_blank_alert_action_is_refused_with_a_message(session, world, now, action):
    enrolled = world["enrolled"]
    alert = add_alert(session, enrolled.patient, at=now - dt.timedelta(hours=1))
    response = world["staff"].post(
        f"/staff/patients/{enrolled.patient.id}/alerts/{alert.id}/acknowledge", data={"action": action}
    )
    assert response.status_code == 302
    page = world["staff"].get(response.headers["Location"]).get_data(as_text=True)
    assert "Describe the action taken" in page
    session.expire_all()
    assert session.get(Alert, alert.id).acknowledged_at is None


def test_ids_beyond_the_integer_range_are_a_404(session, world):
    enrolled, tp = world["enrolled"], world["diary"]
    pid = enrolled.patient.id
    for client, url, method in [
        (world["patient"], f"/p/t/{HUGE}", "GET"),
        (world["patient"], f"/p/t/{HUGE}/respondent", "POST"),
        (world["patient"], f"/p/t/{tp.id}/{DIARY}/{HUGE}", "POST"),
        (world["patient"], f"/p/t/{HUGE}/submit", "GET"),
        (world["staff"], f"/staff/patients/{HUGE}", "GET"),
        (world["staff"], f"/staff/patients/{pid}/timepoints/{HUGE}/reason", "POST"),
        (world["staff"], f"/staff/patients/{pid}/events/{HUGE}/move", "GET"),
        (world["staff"], f"/staff/patients/{pid}/alerts/{HUGE}/acknowledge", "POST"),
        (world["staff"], f"/staff/admin/users/{HUGE}", "GET"),
        (world["staff"], f"/staff/patients?page={HUGE}", "GET"),
        (world["staff"], f"/staff/patients?page={MAX_DB_INT}", "GET"),
        (world["staff"], f"/staff/?site={HUGE}", "GET"),
    ]:
        assert client.open(url, method=method).status_code == 404, url
    assert world["staff"].get("/staff/patients?page=abc").status_code == 200  # not a number: the first page
    assert world["staff"].get(f"/staff/patients?page=-{HUGE}").status_code == 404


@pytest.mark.parametrize("text", ["\x00", "fell\x00ill", "\x1b[31m", "\x7f", "a\x08b"])
def test_control_characters_in_text_fields_are_refused_on_both_databases(session, world, text):
    enrolled = world["enrolled"]
    pid = enrolled.patient.id
    before = session.scalar(select(func.count()).select_from(AuditEvent))
    status = world["staff"].post(
        f"/staff/patients/{pid}/status", data={"status": "lost", "date": "2026-03-10", "reason": text}
    )
    assert status.status_code == 422  # the patient page again, with the message
    assert "characters that cannot be stored" in status.get_data(as_text=True)
    enrol = world["staff"].post(
        "/staff/patients/new",
        data={
            "study_id": f"X{text}1",
            "site_id": world["site"].id,
            "arm": "A",
            "randomization_date": "2026-03-01",
            "language": "en",
            "email": f"a{text}@b.cn",
        },
    )
    assert enrol.status_code == 400 and "characters that cannot be stored" in enrol.get_data(as_text=True)
    search = world["staff"].get("/staff/patients", query_string={"q": text})
    assert search.status_code == 200
    session.expire_all()
    assert session.get(Patient, pid).status == "active"
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == before


def test_a_line_break_in_a_reason_is_fine(session, world):
    pid = world["enrolled"].patient.id
    world["staff"].post(
        f"/staff/patients/{pid}/status", data={"status": "lost", "date": "2026-03-10", "reason": "a\r\nb"}
    )
    session.expire_all()
    assert session.get(Patient, pid).status == "lost"


def test_a_whitespace_only_phone_is_not_stored(session, world):
    response = world["staff"].post(
        "/staff/patients/new",
        data={
            "study_id": "WS-1",
            "site_id": world["site"].id,
            "arm": "A",
            "randomization_date": "2026-03-01",
            "language": "en",
            "phone": "   ",
            "email": " \t ",
        },
    )
    assert response.status_code == 200 and 'class="qr"' in response.get_data(as_text=True)
    patient = session.scalar(select(Patient).where(Patient.study_id == "WS-1"))
    assert (patient.phone, patient.email) == (None, None)


def test_a_whitespace_only_reason_counts_as_missing(session, world):
    pid = world["enrolled"].patient.id
    world["staff"].post(f"/staff/patients/{pid}/status", data={"status": "lost", "date": "2026-03-10", "reason": "  "})
    session.expire_all()
    assert session.get(Patient, pid).status == "active"


def test_an_end_status_without_its_date_is_refused_on_the_date_field(session, world):
    pid = world["enrolled"].patient.id
    refused = world["staff"].post(f"/staff/patients/{pid}/status", data={"status": "died", "reason": "family called"})
    assert refused.status_code == 422 and "A date is required." in refused.get_data(as_text=True)
    session.expire_all()
    assert session.get(Patient, pid).status == "active"


def test_a_request_id_header_is_kept_only_when_plain(app, session, world):
    add_timepoint  # noqa: B018 - imported for other tests of this module's family
    client = world["patient"]
    client.post("/p/logout", headers={"X-Request-ID": "abc\x00def"})
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "sign_out"))
    assert event.request_id and "\x00" not in event.request_id and event.request_id != "abc\x00def"
