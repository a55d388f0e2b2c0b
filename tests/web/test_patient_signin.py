"""Personal link, PIN throttling, idle expiry, sign-out and the language switch (real HTTP)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from qol_app.models import AuditEvent, LoginSession, Patient
from tests.factories import hidden_fields, isolated_client, sign_in


@pytest.fixture
def client(app):
    return isolated_client(app)


def _counts(session):
    return (
        session.scalar(select(func.count()).select_from(LoginSession)),
        session.scalar(select(func.count()).select_from(AuditEvent)),
    )


def test_opening_the_link_changes_nothing(client, factory, session):
    enrolled = factory.patient(language="zh_Hans")
    before = _counts(session)
    for _ in range(2):  # a mail scanner, then the patient
        response = client.get(f"/p/l/{enrolled.token}")
        assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert 'lang="zh-Hans"' in body and 'name="pin"' in body
    assert _counts(session) == before
    session.refresh(enrolled.patient)
    assert enrolled.patient.pin_failures == 0
    with client.session_transaction() as cookie:
        assert "sid" not in cookie


def test_sign_in_lands_on_token_free_home(client, factory, session):
    enrolled = factory.patient()
    response = sign_in(client, enrolled.token)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/p/")
    assert enrolled.token not in response.headers["Location"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    home = client.get("/p/")
    assert home.status_code == 200
    assert enrolled.token not in home.get_data(as_text=True)
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "sign_in")).actor_type == "patient"


def test_unknown_token_is_a_friendly_404(client):
    response = client.get("/p/l/not-a-real-token", headers={"Accept-Language": "zh-CN"})
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert 'lang="zh-Hans"' in body and "Traceback" not in body
    assert client.post("/p/l/not-a-real-token").status_code in (400, 404)


def test_wrong_pins_lock_then_unlock_and_a_right_pin_resets(app, client, factory, session, now):
    app.config.update(PIN_MAX_FAILURES=3, PIN_LOCK_MINUTES=15)
    enrolled = factory.patient(language="en")
    patient = enrolled.patient

    first = sign_in(client, enrolled.token, pin="000000")
    assert first.status_code == 200 and "2 more tries" in first.get_data(as_text=True)
    session.refresh(patient)
    assert patient.pin_failures == 1
    sign_in(client, enrolled.token, pin="111111")
    session.refresh(patient)
    assert patient.pin_failures == 2

    locked = sign_in(client, enrolled.token, pin="222222")
    assert locked.status_code == 429
    body = locked.get_data(as_text=True)
    # 04:00 UTC + 15 min = 12:15 in Shanghai, told in the patient's own time.
    assert "try again after" in body and "12:15" in body
    session.refresh(patient)
    assert patient.pin_locked_until == now + dt.timedelta(minutes=15)

    # While locked even the right PIN is refused, and the GET page says so without changing anything.
    assert sign_in(client, enrolled.token).status_code == 429
    assert "try again after" in client.get(f"/p/l/{enrolled.token}").get_data(as_text=True)

    app.config["FROZEN_NOW"] = now + dt.timedelta(minutes=16)
    assert sign_in(client, enrolled.token).status_code == 302
    session.refresh(patient)
    assert (patient.pin_failures, patient.pin_locked_until) == (0, None)
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.patient_id == patient.id)).all()
    assert actions.count("pin_failed") == 2 and actions.count("pin_locked") == 1


def test_a_right_pin_resets_earlier_failures(client, factory, session):
    enrolled = factory.patient()
    sign_in(client, enrolled.token, pin="999999")
    session.refresh(enrolled.patient)
    assert enrolled.patient.pin_failures == 1
    assert sign_in(client, enrolled.token).status_code == 302
    session.refresh(enrolled.patient)
    assert enrolled.patient.pin_failures == 0


def test_patient_without_pin_signs_in_with_the_button(client, factory):
    enrolled = factory.patient(pin=None)
    page = client.get(f"/p/l/{enrolled.token}").get_data(as_text=True)
    assert 'name="pin"' not in page
    assert sign_in(client, enrolled.token, pin=None).status_code == 302


def test_idle_session_expires(app, client, factory, now):
    enrolled = factory.patient()
    sign_in(client, enrolled.token)
    assert client.get("/p/").status_code == 200
    app.config["FROZEN_NOW"] = now + dt.timedelta(minutes=app.config["PATIENT_IDLE_MINUTES"] + 1)
    response = client.get("/p/")
    assert response.status_code == 302 and "/p/signed-out?expired=1" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "personal link" in page or "个人链接" in page


def test_sign_out(client, factory, session):
    enrolled = factory.patient(language="en")
    sign_in(client, enrolled.token)
    home = client.get("/p/").get_data(as_text=True)
    token = hidden_fields(home)["csrf_token"]
    response = client.post("/p/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/p/signed-out")
    assert client.get("/p/").status_code == 302
    ended = session.scalar(select(LoginSession).where(LoginSession.subject_id == enrolled.patient.id))
    assert ended.end_reason == "logout"


def test_language_switch_when_signed_in_is_stored_and_audited(client, factory, session):
    enrolled = factory.patient(language="zh_Hans")
    sign_in(client, enrolled.token)
    home = client.get("/p/").get_data(as_text=True)
    assert 'lang="zh-Hans"' in home
    response = client.post(
        "/p/language", data={"csrf_token": hidden_fields(home)["csrf_token"], "lang": "en", "next": "/p/"}
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/p/")
    assert 'lang="en"' in client.get("/p/").get_data(as_text=True)
    session.refresh(enrolled.patient)
    assert enrolled.patient.language == "en"
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "set_language"))
    assert (event.old, event.new) == ({"language": "zh_Hans"}, {"language": "en"})


def test_language_chosen_on_link_page_applies_at_sign_in(client, factory, session):
    enrolled = factory.patient(language="zh_Hans")
    link = f"/p/l/{enrolled.token}"
    page = client.get(link).get_data(as_text=True)
    response = client.post(
        "/p/language", data={"csrf_token": hidden_fields(page)["csrf_token"], "lang": "en", "next": link}
    )
    assert response.headers["Location"].endswith(link)
    assert 'lang="en"' in client.get(link).get_data(as_text=True)
    session.refresh(enrolled.patient)
    assert enrolled.patient.language == "zh_Hans"  # nobody has signed in yet
    sign_in(client, enrolled.token)
    assert session.scalar(select(Patient.language).where(Patient.id == enrolled.patient.id)) == "en"


def test_language_switch_refuses_foreign_redirects(client, factory):
    enrolled = factory.patient()
    page = client.get(f"/p/l/{enrolled.token}").get_data(as_text=True)
    response = client.post(
        "/p/language",
        data={"csrf_token": hidden_fields(page)["csrf_token"], "lang": "en", "next": "https://evil.example/"},
    )
    assert response.headers["Location"].endswith("/p/")


def test_a_pin_hashed_with_older_settings_is_rehashed_at_the_next_correct_pin(client, factory, session):
    from argon2 import PasswordHasher

    enrolled = factory.patient()
    patient = enrolled.patient
    patient.pin_hash = PasswordHasher(time_cost=3, memory_cost=2048, parallelism=2).hash("123456")
    session.flush()
    assert sign_in(client, enrolled.token, pin="654321").status_code != 302  # a wrong PIN changes no hash
    session.refresh(patient)
    assert "m=2048,t=3,p=2" in patient.pin_hash
    assert sign_in(client, enrolled.token).status_code == 302
    session.refresh(patient)
    assert "m=1024,t=1,p=1" in patient.pin_hash  # the settings hash_pin uses now (test-sized here)
    client.post("/p/logout", data=hidden_fields(client.get("/p/").get_data(as_text=True)))
    assert sign_in(client, enrolled.token).status_code == 302  # the new hash verifies
