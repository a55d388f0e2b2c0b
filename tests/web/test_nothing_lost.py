"""Nothing typed is lost: the language switch and sign-out on a survey page save its ticks first; after
signing out, the PIN alone lets the patient back in on the same device, and not on another."""

from __future__ import annotations

from sqlalchemy import select

from qol_app.models import Answer, DeviceGrant, Response
from qol_app.services import devices, enrolment
from qol_app.services.audit import Actor
from tests.factories import hidden_fields, isolated_client, page_form, sign_in

EQ5D = "eq5d5l"


def _stored(session, tp):
    response = session.scalar(select(Response).where(Response.timepoint_id == tp.id))
    rows = session.scalars(select(Answer).where(Answer.response_id == response.id)).all() if response else []
    return {a.item_id: a.value for a in rows if not a.skipped}


def _post_page(client, url, answers, nav):
    page = client.get(url)
    assert page.status_code == 200
    return client.post(url, data=page_form(page.get_data(as_text=True)) | answers | {"nav": nav})


def test_switching_language_mid_page_keeps_the_ticks(app, session, factory):
    enrolled = factory.patient(language="en")
    tp = factory.timepoint(enrolled, instruments=[EQ5D], respondent="self")
    session.commit()
    client = isolated_client(app)
    sign_in(client, enrolled.token)
    url = f"/p/t/{tp.id}/{EQ5D}/1"
    page = client.get(url).get_data(as_text=True)
    assert 'form="survey" name="nav" value="lang:zh_Hans"' in page  # the header button submits the page
    switched = _post_page(client, url, {"mo": "2"}, "lang:zh_Hans")
    assert switched.status_code == 302 and switched.headers["Location"].endswith(url)
    assert _stored(session, tp) == {"mo": 2.0}
    again = client.get(url).get_data(as_text=True)
    assert 'lang="zh-Hans"' in again and 'name="mo" value="2" checked' in again
    session.expire_all()
    assert enrolled.patient.language == "zh_Hans"


def test_signing_out_mid_page_keeps_the_ticks_and_the_pin_lets_her_back_in_here(app, session, factory):
    enrolled = factory.patient(language="en")
    tp = factory.timepoint(enrolled, instruments=[EQ5D], respondent="self")
    session.commit()
    phone = isolated_client(app)
    signed = sign_in(phone, enrolled.token)
    assert phone.get_cookie(devices.COOKIE, path="/p/") is not None
    assert signed.status_code == 302
    url = f"/p/t/{tp.id}/{EQ5D}/1"
    out = _post_page(phone, url, {"mo": "3"}, "signout")
    assert out.status_code == 302 and out.headers["Location"].endswith("/p/signed-out?saved=1")
    assert _stored(session, tp) == {"mo": 3.0}
    page = phone.get(out.headers["Location"]).get_data(as_text=True)
    assert "were saved" in page and "not used for a while" not in page  # on purpose, not automatic
    assert 'action="/p/signed-out"' in page and 'name="pin"' in page
    assert phone.get("/p/").status_code == 302  # really signed out
    wrong = phone.post("/p/signed-out", data=hidden_fields(page) | {"pin": "000000"})
    assert wrong.status_code == 200 and "not right" in wrong.get_data(as_text=True)
    page = phone.get("/p/signed-out").get_data(as_text=True)
    back = phone.post("/p/signed-out", data=hidden_fields(page) | {"pin": "123456"})
    assert back.status_code == 302
    assert phone.get(f"/p/t/{tp.id}").headers["Location"].endswith(url)
    assert 'name="mo" value="3" checked' in phone.get(url).get_data(as_text=True)

    # Another device has no grant: no PIN form there, and a posted PIN is refused.
    other = isolated_client(app)
    page = other.get("/p/signed-out").get_data(as_text=True)
    assert 'name="pin"' not in page
    token = other.get("/p/l/nope")  # any page gives a CSRF token for the session
    csrf = hidden_fields(token.get_data(as_text=True)).get("csrf_token", "")
    refused = other.post("/p/signed-out", data={"csrf_token": csrf, "pin": "123456"})
    assert refused.status_code == 403 and other.get("/p/").status_code == 302


def test_a_new_pin_revokes_the_device_grants(app, session, factory, now):
    enrolled = factory.patient(language="en")
    session.commit()
    phone = isolated_client(app)
    sign_in(phone, enrolled.token)
    page = phone.get("/p/").get_data(as_text=True)
    phone.post("/p/logout", data=page_form(page))
    assert 'name="pin"' in phone.get("/p/signed-out").get_data(as_text=True)
    enrolment.set_pin(session, Actor.system("tests"), enrolled.patient, "654321", reason="forgot", now=now)
    session.commit()
    assert 'name="pin"' not in phone.get("/p/signed-out").get_data(as_text=True)
    grants = session.scalars(select(DeviceGrant).where(DeviceGrant.patient_id == enrolled.patient.id)).all()
    assert grants and all(g.revoked_at is not None for g in grants)


def test_no_grant_for_a_patient_without_a_pin(app, session, factory):
    enrolled = factory.patient(language="en", pin=None)
    session.commit()
    phone = isolated_client(app)
    sign_in(phone, enrolled.token, pin=None)
    assert phone.get_cookie(devices.COOKIE, path="/p/") is None


def test_a_page_sent_after_signing_out_on_purpose_does_not_claim_an_automatic_sign_out(app, session, factory):
    enrolled = factory.patient(language="en")
    tp = factory.timepoint(enrolled, instruments=[EQ5D], respondent="self")
    session.commit()
    phone = isolated_client(app)
    sign_in(phone, enrolled.token)
    url = f"/p/t/{tp.id}/{EQ5D}/1"
    open_page = phone.get(url).get_data(as_text=True)
    phone.post("/p/logout", data=page_form(phone.get("/p/").get_data(as_text=True)))
    late = phone.post(url, data=page_form(open_page) | {"mo": "2", "nav": "next"})
    body = late.get_data(as_text=True)
    assert late.status_code == 401 and "kept on this phone" in body
    assert "For your safety" not in body and "You are signed out" in body


def test_signing_out_from_a_red_diary_page_still_shows_the_call_page(app, session, factory):
    enrolled = factory.patient(language="en")
    tp = factory.timepoint(enrolled, instruments=["symptom_diary"], respondent="self")
    session.commit()
    phone = isolated_client(app)
    sign_in(phone, enrolled.token)
    from qol_app.services import responses

    plan = responses.page_plan(responses.registry().get("symptom_diary"), enrolled.patient)
    number = next(p.number for p in plan if "seizure" in p.item_ids)
    out = _post_page(phone, f"/p/t/{tp.id}/symptom_diary/{number}", {"seizure": "1"}, "signout")
    assert out.status_code == 200 and 'href="tel:' in out.get_data(as_text=True)
    assert phone.get("/p/").status_code == 302  # and signed out
