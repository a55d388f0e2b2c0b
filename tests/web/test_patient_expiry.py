"""Nothing typed is lost: an expired page token or an ended session keeps the posted answers."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from qol_app.models import Answer, Response, Timepoint
from tests.factories import isolated_client, page_form, sign_in

C30 = "eortc_qlq_c30"
PAGE1 = {"q1": "2", "q2": "3", "q3": "1", "q4": "4", "q5": "2"}


@pytest.fixture
def enrolled(factory):
    return factory.patient(pin=None, language="en")


@pytest.fixture
def tp(factory, enrolled):
    return factory.timepoint(enrolled, respondent="self")


def _signed_in(app, enrolled):
    client = isolated_client(app)
    assert sign_in(client, enrolled.token, pin=None).status_code == 302
    return client


def _saved(session):
    session.expire_all()
    return {a.item_id: a.value for a in session.scalars(select(Answer))}


def _ticked(body: str, answers: dict) -> bool:
    return all(f'name="{k}" value="{v}" checked' in body for k, v in answers.items())


def test_bad_page_token_shows_answers_again_with_a_fresh_token(app, enrolled, tp, session):
    client = _signed_in(app, enrolled)
    url = f"/p/t/{tp.id}/{C30}/1"
    form = page_form(client.get(url).get_data(as_text=True)) | {"csrf_token": "stale-or-forged", "nav": "next"}
    response = client.post(url, data=form | PAGE1)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert _ticked(body, PAGE1) and "needs sending once more" in body
    assert _saved(session) == {}
    again = client.post(url, data=page_form(body) | {"nav": "next"} | PAGE1)
    assert again.status_code == 302
    assert _saved(session) == {k: float(v) for k, v in PAGE1.items()}


def test_expired_page_token_keeps_answers(app, enrolled, tp, session):
    client = _signed_in(app, enrolled)
    url = f"/p/t/{tp.id}/{C30}/1"
    client.get(url)
    with client.session_transaction() as cookie:
        raw = cookie["csrf_token"]

    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - app.config["WTF_CSRF_TIME_LIMIT"] - 60

    expired = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token", signer=LongAgo).dumps(raw)
    response = client.post(url, data={"csrf_token": expired, "nav": "next"} | PAGE1)
    assert response.status_code == 400 and _ticked(response.get_data(as_text=True), PAGE1)
    assert _saved(session) == {}


def test_idle_expiry_keeps_answers_until_the_patient_signs_in_again(app, enrolled, tp, session, now):
    client = _signed_in(app, enrolled)
    url = f"/p/t/{tp.id}/{C30}/1"
    form = page_form(client.get(url).get_data(as_text=True)) | {"nav": "next"}
    app.config["FROZEN_NOW"] = now + dt.timedelta(minutes=app.config["PATIENT_IDLE_MINUTES"] + 5)

    response = client.post(url, data=form | PAGE1)
    body = response.get_data(as_text=True)
    assert response.status_code == 401
    assert _ticked(body, PAGE1) and "signed out" in body and "personal link" in body
    assert 'value="next"' not in body  # no Next button that could only fail again
    assert _saved(session) == {}

    back = sign_in(client, enrolled.token, pin=None)
    assert back.headers["Location"].endswith(url)  # straight back to the page, not home
    restored = client.get(url).get_data(as_text=True)
    assert _ticked(restored, PAGE1) and "Welcome back" in restored
    saved = client.post(url, data=page_form(restored) | {"nav": "next"} | PAGE1)
    assert saved.status_code == 302
    assert _saved(session) == {k: float(v) for k, v in PAGE1.items()}
    assert "Welcome back" not in client.get(url).get_data(as_text=True)  # given back once


def test_signing_out_in_another_tab_keeps_this_tabs_answers(app, enrolled, tp):
    client = _signed_in(app, enrolled)
    url = f"/p/t/{tp.id}/{C30}/1"
    form = page_form(client.get(url).get_data(as_text=True)) | {"nav": "next"}
    client.post("/p/logout", data={"csrf_token": form["csrf_token"]})
    response = client.post(url, data=form | PAGE1)
    assert response.status_code == 401 and _ticked(response.get_data(as_text=True), PAGE1)


def test_kept_answers_are_never_shown_to_another_patient(app, factory, enrolled, tp, session, now):
    client = _signed_in(app, enrolled)
    url = f"/p/t/{tp.id}/{C30}/1"
    form = page_form(client.get(url).get_data(as_text=True)) | {"nav": "next"}
    app.config["FROZEN_NOW"] = now + dt.timedelta(hours=1)
    client.post(url, data=form | PAGE1)
    other = factory.patient(pin=None, language="en")
    landed = sign_in(client, other.token, pin=None)
    assert landed.headers["Location"].endswith("/p/")
    assert client.get(url).status_code == 404
    with client.session_transaction() as cookie:
        assert "kept" not in cookie


def test_unknown_browser_gets_no_instrument_text_but_answers_are_kept(app, enrolled, tp, session):
    stranger = isolated_client(app)
    url = f"/p/t/{tp.id}/{C30}/1"
    response = stranger.post(url, data={"csrf_token": "none", "nav": "next"} | PAGE1)
    body = response.get_data(as_text=True)
    assert response.status_code == 401
    assert "Trouble with" not in body and "kept on this phone" in body
    assert _saved(session) == {}
    # If the owner signs in on this browser, the answers come back on that page.
    assert sign_in(stranger, enrolled.token, pin=None).headers["Location"].endswith(url)
    assert _ticked(stranger.get(url).get_data(as_text=True), PAGE1)


def test_other_pages_left_open_too_long_ask_to_press_again(app, enrolled, factory, session):
    link = isolated_client(app)
    stale_link = link.post(f"/p/l/{enrolled.token}", data={"csrf_token": "old"})
    assert stale_link.status_code == 400 and "press the button again" in stale_link.get_data(as_text=True)
    assert sign_in(link, enrolled.token, pin=None).status_code == 302

    who = factory.timepoint(enrolled)
    stale_who = link.post(f"/p/t/{who.id}/respondent", data={"csrf_token": "old", "respondent": "self_assisted"})
    body = stale_who.get_data(as_text=True)
    assert stale_who.status_code == 400 and 'value="self_assisted" checked' in body
    session.expire_all()
    assert session.get(Timepoint, who.id).respondent is None

    half = factory.timepoint(enrolled, respondent="self")
    page = f"/p/t/{half.id}/{C30}/1"
    link.post(page, data=page_form(link.get(page).get_data(as_text=True)) | {"nav": "next"} | PAGE1)
    stale_review = link.post(f"/p/t/{half.id}/submit", data={"csrf_token": "old"})
    assert stale_review.status_code == 400 and "press the button again" in stale_review.get_data(as_text=True)
    assert session.scalar(select(Response.status)) == "in_progress"
    assert link.get("/p/t/999999/submit").status_code == 404
    assert link.post(f"/p/t/999999/{C30}/1", data={"csrf_token": "old"}).status_code == 404

    signed_out = link.post("/p/logout", data={"csrf_token": "old"})
    assert signed_out.headers["Location"].endswith("/p/signed-out")
    assert link.get("/p/").status_code == 302
