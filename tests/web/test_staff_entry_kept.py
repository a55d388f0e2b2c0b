"""A nurse's transcribed paper form survives an expired page token or session, as patient pages do."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from qol_app.models import LoginSession, Response
from tests.factories import STAFF_PASSWORD, csrf_token, isolated_client

DIARY = "symptom_diary"
TYPED = {
    "entry_mode": "paper_transcribed",
    "entry_respondent": "proxy",
    "entry_relationship": "child",
    "temperature": "38,4",
    "chills": "1",
    "headache": "3",
    "seizure": "0",
}


@pytest.fixture
def entry(app, factory, session):
    site = factory.site()
    nurse = factory.staff("nurse", sites=[site])
    other = factory.staff("nurse", sites=[site])
    enrolled = factory.patient(site, pin=None, language="en")
    tp = factory.timepoint(enrolled, instruments=[DIARY])
    url = f"/staff/patients/{enrolled.patient.id}/timepoints/{tp.id}/enter/{DIARY}"
    client = isolated_client(app)
    _sign_in(client, nurse.username)
    return {"client": client, "url": url, "nurse": nurse, "other": other, "tp": tp}


def _sign_in(client, username, next_path=""):
    token = csrf_token(client, "/staff/login")
    response = client.post(
        f"/staff/login{next_path}", data={"username": username, "password": STAFF_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    return response


def _shows_typed(body: str) -> None:
    """Every typed entry is on the page again: the number as typed, the ticked choices, the proxy."""
    checked = {}
    for tag in re.findall(r"<input[^>]*>", body):
        if " checked" in tag:
            checked[re.search(r'name="([^"]+)"', tag).group(1)] = re.search(r'value="([^"]*)"', tag).group(1)
    assert 'value="38,4"' in body
    assert checked == {
        "entry_mode": "paper_transcribed",
        "entry_respondent": "proxy",
        "chills": "1",
        "headache": "3",
        "seizure": "0",
    }
    assert re.search(r'<option selected value="child">', body)


def _no_response(session, tp):
    return session.scalar(select(func.count()).select_from(Response).where(Response.timepoint_id == tp.id)) == 0


def test_an_expired_page_token_shows_the_form_again_as_typed(session, entry):
    response = entry["client"].post(entry["url"], data=TYPED | {"csrf_token": "expired-token"})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "was not saved yet" in body
    _shows_typed(body)
    assert _no_response(session, entry["tp"])
    fresh = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', body)
    token = fresh.group(1) or fresh.group(2)
    saved = entry["client"].post(entry["url"], data=TYPED | {"csrf_token": token})
    assert saved.status_code == 302 and not _no_response(session, entry["tp"])


def test_an_expired_session_keeps_the_answers_until_signed_in_again(app, session, entry, now):
    client, url = entry["client"], entry["url"]
    token = csrf_token(client, url)
    app.config["FROZEN_NOW"] = now + dt.timedelta(minutes=app.config["STAFF_IDLE_MINUTES"] + 5)  # idle too long
    response = client.post(url, data=TYPED | {"csrf_token": token})
    assert response.status_code == 302 and "/staff/login?next=" in response.headers["Location"]
    assert _no_response(session, entry["tp"])
    login_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "what you entered is kept" in login_page
    back = _sign_in(client, entry["nurse"].username, "?next=" + url)
    assert back.headers["Location"].endswith(url)
    page = client.get(url)
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "before your session ended" in body
    _shows_typed(body)
    assert _no_response(session, entry["tp"])  # nothing saved until Save is pressed
    again = client.get(url).get_data(as_text=True)
    assert "before your session ended" not in again  # given back once


def test_kept_answers_are_not_given_to_another_staff_member(app, session, entry, now):
    client, url = entry["client"], entry["url"]
    token = csrf_token(client, url)
    app.config["FROZEN_NOW"] = now + dt.timedelta(hours=2)
    client.post(url, data=TYPED | {"csrf_token": token})
    _sign_in(client, entry["other"].username)
    assert "before your session ended" not in client.get(url).get_data(as_text=True)
    ended = session.scalars(select(LoginSession).where(LoginSession.end_reason == "idle")).all()
    assert ended
