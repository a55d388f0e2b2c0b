"""Plain words for patients: validation messages in both languages; a rubbed-out number is an
explicit skip with the usual reminder, never the old value kept; each diary names its day."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from qol_app.models import Answer, Response
from qol_app.services import responses
from tests.factories import isolated_client, page_form, sign_in

EQ5D = "eq5d5l"
DIARY = "symptom_diary"


def _vas_page(app, session, factory, language):
    enrolled = factory.patient(language=language)
    tp = factory.timepoint(enrolled, instruments=[EQ5D], respondent="self")
    session.commit()
    client = isolated_client(app)
    sign_in(client, enrolled.token)
    plan = responses.page_plan(responses.registry().get(EQ5D), enrolled.patient)
    page_no = next(p.number for p in plan if "vas" in p.item_ids)
    return client, tp, f"/p/t/{tp.id}/{EQ5D}/{page_no}"


@pytest.mark.parametrize(
    ("language", "words", "jargon"),
    [("en", "whole number with digits only", "Not a valid integer"), ("zh_Hans", "只用数字", "不是有效的")],
)
def test_a_wrong_number_is_explained_in_plain_words(app, session, factory, language, words, jargon):
    client, _tp, url = _vas_page(app, session, factory, language)
    page = client.get(url).get_data(as_text=True)
    posted = client.post(url, data=page_form(page) | {"vas": "seventy", "nav": "next"})
    body = posted.get_data(as_text=True)
    assert posted.status_code == 422 and words in body and jargon not in body
    assert 'value="seventy"' in body  # what was typed stays


def test_rubbing_out_a_saved_number_stores_a_skip_and_reminds(app, session, factory):
    client, tp, url = _vas_page(app, session, factory, "en")
    page = client.get(url).get_data(as_text=True)
    assert client.post(url, data=page_form(page) | {"vas": "70", "nav": "next"}).status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert 'value="70"' in page
    cleared = client.post(url, data=page_form(page) | {"vas": "", "nav": "next"})
    assert cleared.status_code == 302 and "missing=vas" in cleared.headers["Location"]
    response = session.scalar(select(Response).where(Response.timepoint_id == tp.id))
    row = session.scalar(select(Answer).where(Answer.response_id == response.id, Answer.item_id == "vas"))
    session.refresh(row)
    assert row.skipped and row.value is None
    reminder = client.get(cleared.headers["Location"]).get_data(as_text=True)
    assert "Some questions are not answered" in reminder


@pytest.mark.parametrize(
    ("language", "heading"), [("en", "Diary for Tuesday 1 December"), ("zh_Hans", "12月1日周二的日记")]
)
def test_each_diary_names_its_day(app, session, factory, now, language, heading):
    enrolled = factory.patient(language=language, pin=None)
    tp = factory.timepoint(enrolled, instruments=[DIARY], respondent="self", target_date=dt.date(2026, 12, 1))
    session.commit()
    client = isolated_client(app)
    sign_in(client, enrolled.token, pin=None)
    assert heading in client.get("/p/").get_data(as_text=True)
    assert heading in client.get(f"/p/t/{tp.id}/{DIARY}/1").get_data(as_text=True)


@pytest.mark.parametrize(("arm", "ommaya"), [("A", True), ("B", False)])
def test_ommaya_wording_only_with_a_reservoir(app, session, factory, arm, ommaya):
    enrolled = factory.patient(language="en", pin=None, arm=arm)
    tp = factory.timepoint(enrolled, instruments=[DIARY], respondent="self")
    session.commit()
    client = isolated_client(app)
    sign_in(client, enrolled.token, pin=None)
    plan = responses.page_plan(responses.registry().get(DIARY), enrolled.patient)
    page = client.get(f"/p/t/{tp.id}/{DIARY}/{plan[-1].number}").get_data(as_text=True)
    assert ("Ommaya" in page) is ommaya
    assert "Last 24 hours: alertness" in page
