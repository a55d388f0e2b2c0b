"""Due list, who answers, survey pages: save per page, resume anywhere, skips, changes, ownership."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from qol_app.models import Answer, AuditEvent, Response, Timepoint
from tests.factories import hidden_fields, isolated_client, page_form, send_page, sign_in

C30 = "eortc_qlq_c30"


@pytest.fixture
def client(app):
    return isolated_client(app)


@pytest.fixture
def patient(factory):
    return factory.patient(pin=None, language="en")


def _signed_in(app, enrolled):
    client = isolated_client(app)
    assert sign_in(client, enrolled.token, pin=None).status_code == 302
    return client


def _url(tp, page, instrument=C30):
    return f"/p/t/{tp.id}/{instrument}/{page}"


def _answers(session, tp, instrument=C30):
    session.expire_all()
    response = session.scalar(
        select(Response).where(Response.timepoint_id == tp.id, Response.instrument_id == instrument)
    )
    if response is None:
        return {}
    return {
        a.item_id: (None if a.skipped else a.value)
        for a in session.scalars(select(Answer).where(Answer.response_id == response.id))
    }


def test_home_lists_only_what_is_due_with_local_deadline(app, factory, session, now):
    enrolled = factory.patient(pin=None, language="zh_Hans")
    due = factory.timepoint(enrolled, grace_closes_at=dt.datetime(2026, 3, 12, 16, 0, tzinfo=dt.UTC))
    factory.timepoint(enrolled, opens_at=now + dt.timedelta(days=2), status="scheduled")  # not yet
    factory.timepoint(enrolled, status="completed")
    factory.timepoint(enrolled, status="cancelled")
    factory.timepoint(
        enrolled,
        opens_at=now - dt.timedelta(days=9),
        closes_at=now - dt.timedelta(days=3),
        grace_closes_at=now - dt.timedelta(hours=1),
        status="overdue",
    )  # grace over
    late = factory.timepoint(
        enrolled,
        instruments=["symptom_diary"],
        closes_at=now - dt.timedelta(hours=2),
        grace_closes_at=now + dt.timedelta(hours=6),
        status="overdue",
    )
    body = _signed_in(app, enrolled).get("/p/").get_data(as_text=True)
    assert body.count('href="/p/t/') == 2
    assert f'href="/p/t/{due.id}"' in body and f'href="/p/t/{late.id}"' in body
    # "please answer by" the window's last day, in Chinese date format; the late diary says until when
    assert "请在2026年3月12日前完成" in body and "已逾期" in body
    assert 'href="tel:120"' in body


def test_home_in_english_says_the_last_on_time_day(app, factory, now):
    # Windows are whole local days: the patient reads the last on-time day (issue 14 point 8),
    # not the end of the grace period and not a time of day.
    site = factory.site(contact_phone="021-5555-0101")
    enrolled = factory.patient(site, pin=None, language="en")
    factory.timepoint(enrolled, window_end=dt.date(2026, 3, 11), grace_end=dt.date(2026, 3, 14))
    body = _signed_in(app, enrolled).get("/p/").get_data(as_text=True)
    assert "Please answer by Mar 11, 2026" in body and "Mar 14" not in body
    assert "not watched around the clock" in body
    assert 'href="tel:021-5555-0101"' in body and 'href="tel:120"' in body


def test_other_patients_urls_are_404(app, factory, session):
    mine, theirs = factory.patient(pin=None), factory.patient(pin=None)
    their_tp = factory.timepoint(theirs, respondent="self")
    client = _signed_in(app, mine)
    for url in (
        f"/p/t/{their_tp.id}",
        f"/p/t/{their_tp.id}/respondent",
        _url(their_tp, 1),
        f"/p/t/{their_tp.id}/{C30}/submit",
        f"/p/t/{their_tp.id}/{C30}/done",
        "/p/t/999999",
    ):
        assert client.get(url).status_code == 404, url
    own_tp = factory.timepoint(mine, respondent="self")
    assert client.get(_url(own_tp, 99)).status_code == 404
    assert client.get(f"/p/t/{own_tp.id}/eq5d5l/1").status_code == 404  # not a form of this timepoint
    token = hidden_fields(client.get("/p/").get_data(as_text=True))["csrf_token"]
    assert client.post(_url(their_tp, 1), data={"csrf_token": token, "q1": "2"}).status_code == 404
    assert _answers(session, their_tp) == {}


def test_respondent_is_asked_first_and_stored(app, patient, factory, session):
    tp = factory.timepoint(patient)
    client = _signed_in(app, patient)
    start = client.get(f"/p/t/{tp.id}")
    assert start.headers["Location"].endswith(f"/p/t/{tp.id}/respondent")
    assert client.get(_url(tp, 1)).headers["Location"].endswith(f"/p/t/{tp.id}/respondent")
    page = client.get(f"/p/t/{tp.id}/respondent").get_data(as_text=True)
    token = hidden_fields(page)["csrf_token"]
    missing = client.post(f"/p/t/{tp.id}/respondent", data={"csrf_token": token, "respondent": "proxy"})
    assert missing.status_code == 400 and "who you are to the patient" in missing.get_data(as_text=True)
    ok = client.post(
        f"/p/t/{tp.id}/respondent", data={"csrf_token": token, "respondent": "proxy", "relationship": "child"}
    )
    assert ok.status_code == 302
    session.expire_all()
    stored = session.get(Timepoint, tp.id)
    assert (stored.respondent, stored.respondent_relationship) == ("proxy", "child")
    assert client.get(f"/p/t/{tp.id}").headers["Location"].endswith(_url(tp, 1))
    send_page(client, _url(tp, 1), {f"q{i}": 1 for i in range(1, 6)})
    response = session.scalar(select(Response).where(Response.timepoint_id == tp.id))
    assert (response.respondent, response.respondent_relationship, response.mode) == ("proxy", "child", "web")


def test_page_shows_items_progress_and_big_choices(app, patient, factory):
    tp = factory.timepoint(patient, respondent="self")
    body = _signed_in(app, patient).get(_url(tp, 2)).get_data(as_text=True)
    assert "Page 2 of 7" in body
    for item in ("q6", "q7", "q8", "q9", "q10"):
        assert f'name="{item}" value="1"' in body and f'name="{item}" value="4"' in body
    assert body.count('class="opt"') == 20
    assert "<script>" not in body and "style=" not in body


def test_save_per_page_and_resume_on_another_device(app, patient, factory, session):
    tp = factory.timepoint(patient, respondent="self")
    phone = _signed_in(app, patient)
    first = send_page(phone, _url(tp, 1), {"q1": 1, "q2": 2, "q3": 3, "q4": 4, "q5": 1})
    assert first.status_code == 302 and first.headers["Location"].endswith(_url(tp, 2))
    assert _answers(session, tp) == {"q1": 1, "q2": 2, "q3": 3, "q4": 4, "q5": 1}
    send_page(phone, _url(tp, 2), {"q6": 2, "q7": 2, "q8": 2, "q9": 2, "q10": 2})

    tablet = _signed_in(app, patient)  # a new device, a new session
    assert tablet.get(f"/p/t/{tp.id}").headers["Location"].endswith(_url(tp, 3))
    resumed = tablet.get(_url(tp, 1)).get_data(as_text=True)
    assert 'name="q2" value="2" checked' in resumed and 'name="q4" value="4" checked' in resumed


def test_skip_reminder_then_explicit_skip(app, patient, factory, session):
    tp = factory.timepoint(patient, respondent="self")
    client = _signed_in(app, patient)
    first = send_page(client, _url(tp, 1), {"q1": 2, "q2": 2, "q4": 1})
    assert first.status_code == 302 and "missing=q3.q5" in first.headers["Location"]
    assert _answers(session, tp) == {"q1": 2, "q2": 2, "q4": 1}  # what was given is saved already
    reminder = client.get(first.headers["Location"]).get_data(as_text=True)
    assert "Some questions are not answered" in reminder
    assert "3. Trouble with a short walk outdoors" in reminder and "5. Needing help" in reminder
    assert page_form(reminder)["confirm_skip"] == "q3,q5"
    again = client.post(
        first.headers["Location"],
        data=page_form(reminder) | {"nav": "next", "q1": "2", "q2": "2", "q4": "1", "q5": "3"},
    )
    assert again.headers["Location"].endswith(_url(tp, 2))
    assert _answers(session, tp) == {"q1": 2, "q2": 2, "q3": None, "q4": 1, "q5": 3}
    skipped = session.scalar(select(Answer).where(Answer.item_id == "q3"))
    assert skipped.skipped is True and skipped.value is None


def test_reminder_is_not_for_optional_items_or_going_back(app, factory, session):
    enrolled = factory.patient(pin=None, language="en", arm="A")
    tp = factory.timepoint(enrolled, instruments=["symptom_diary"], respondent="self")
    client = _signed_in(app, enrolled)
    url = _url(tp, 1, "symptom_diary")
    response = send_page(client, url, {"chills": 0})  # temperature is optional: not measured
    assert response.headers["Location"].endswith(_url(tp, 2, "symptom_diary"))
    assert _answers(session, tp, "symptom_diary") == {"temperature": None, "chills": 0}
    back = send_page(client, _url(tp, 2, "symptom_diary"), {"headache": 1}, nav="back")
    assert back.headers["Location"].endswith(url)
    assert _answers(session, tp, "symptom_diary") == {"temperature": None, "chills": 0, "headache": 1}


def test_number_item_validates_and_accepts_a_comma(app, factory, session):
    enrolled = factory.patient(pin=None, language="en")
    tp = factory.timepoint(enrolled, instruments=["symptom_diary"], respondent="self")
    client = _signed_in(app, enrolled)
    url = _url(tp, 1, "symptom_diary")
    bad = send_page(client, url, {"temperature": "99", "chills": 0})
    assert bad.status_code == 422 and "from 34" in bad.get_data(as_text=True)
    assert 'value="99"' in bad.get_data(as_text=True)
    assert _answers(session, tp, "symptom_diary") == {}
    send_page(client, url, {"temperature": "37,6", "chills": 1})
    assert _answers(session, tp, "symptom_diary") == {"temperature": 37.6, "chills": 1}
    resumed = client.get(url).get_data(as_text=True)
    assert 'name="temperature" value="37.6"' in resumed and 'name="chills" value="1" checked' in resumed


def test_ommaya_item_only_for_arm_a(app, factory):
    for arm, shown in (("A", True), ("B", False)):
        enrolled = factory.patient(pin=None, language="en", arm=arm)
        tp = factory.timepoint(enrolled, instruments=["symptom_diary"], respondent="self")
        body = _signed_in(app, enrolled).get(_url(tp, 4, "symptom_diary")).get_data(as_text=True)
        assert ('name="ommaya_site"' in body) is shown


def test_changing_an_answer_updates_the_row_and_is_audited(app, patient, factory, session):
    tp = factory.timepoint(patient, respondent="self")
    client = _signed_in(app, patient)
    page1 = {"q1": 1, "q2": 1, "q3": 1, "q4": 1, "q5": 1}
    send_page(client, _url(tp, 1), page1)
    row_id = session.scalar(select(Answer.id).where(Answer.item_id == "q2"))
    send_page(client, _url(tp, 1), page1 | {"q2": 3})
    assert _answers(session, tp)["q2"] == 3
    assert session.scalar(select(Answer.id).where(Answer.item_id == "q2")) == row_id
    change = session.scalar(select(AuditEvent).where(AuditEvent.action == "change_answers"))
    assert (change.old, change.new, change.actor_type) == ({"q2": 1}, {"q2": 3}, "patient")
    created = session.scalar(select(AuditEvent).where(AuditEvent.action == "save_answers"))
    assert created.new == {f"q{i}": 1 for i in range(1, 6)}
    send_page(client, _url(tp, 1), page1 | {"q2": 3})  # nothing changed: no new event
    assert (
        len(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == "change_answers").order_by(AuditEvent.id)
            ).all()
        )
        == 1
    )


def test_closed_timepoint_cannot_be_answered(app, patient, factory, now):
    tp = factory.timepoint(
        patient,
        respondent="self",
        opens_at=now - dt.timedelta(days=5),
        closes_at=now - dt.timedelta(days=2),
        grace_closes_at=now - dt.timedelta(days=1),
        status="missed",
    )
    client = _signed_in(app, patient)
    assert client.get(_url(tp, 1)).status_code == 410
    assert client.get(f"/p/t/{tp.id}").status_code == 410


def test_client_clock_is_recorded_when_sent(app, patient, factory, session):
    tp = factory.timepoint(patient, respondent="self")
    client = _signed_in(app, patient)
    send_page(client, _url(tp, 1), {"q1": 1}, client_time="2026-03-10T12:01:02", client_offset="480")
    session.expire_all()
    response = session.scalar(select(Response).where(Response.timepoint_id == tp.id))
    assert (response.client_time, response.client_utc_offset_minutes) == ("2026-03-10T12:01:02", 480)


def test_instrument_text_is_in_the_patient_language(app, factory):
    enrolled = factory.patient(pin=None, language="zh_Hans")
    tp = factory.timepoint(enrolled, respondent="self")
    body = _signed_in(app, enrolled).get(_url(tp, 1)).get_data(as_text=True)
    assert "长距离步行有困难" in body and "Trouble with a long walk" not in body


def test_memoised_item_html_is_the_macro_output_for_every_state(app):
    """Items are rendered once per (item, number, chosen code); the result must equal a fresh render."""
    from qol_app.instruments import get_registry, localize
    from qol_app.patient.render import FieldView, item_html

    texts = localize(get_registry().get(C30), "zh_Hans")
    macro = app.jinja_env.get_template("macros/fields.html").module.item_field
    with app.test_request_context("/"):
        for item in texts.items[:3] + texts.items[-1:]:
            for value in ("", *(str(o.code) for o in item.options), "not-a-code"):
                for error in (None, "Please choose one answer."):
                    view = FieldView(item, 7, value, error)
                    first = item_html(view)
                    assert first == macro(view) and item_html(view) == first
                    chosen = [o.code for o in item.options if str(o.code) == value]
                    assert first.count(" checked") == len(chosen)
                    assert (error or "") in first
