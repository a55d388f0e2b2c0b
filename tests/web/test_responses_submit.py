"""Review and submit: atomic, exactly once (taps, tabs, threads), scored, timepoint completed, alerts."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from qol_app.models import (
    Alert,
    Answer,
    AuditEvent,
    OutboxMessage,
    Response,
    Score,
    SiteMembership,
    StaffUser,
    Timepoint,
)
from qol_app.scoring import SCORING_VERSION, score
from tests.factories import (
    Factory,
    fill_form,
    fill_visit,
    isolated_client,
    page_form,
    send_page,
    sign_in,
    submit_form,
)

C30 = "eortc_qlq_c30"
C30_ANSWERS = {f"q{i}": (i % 4) + 1 for i in range(1, 29)} | {"q29": 5, "q30": 6}
CALM_DIARY = {
    "chills": 0,
    "headache": 1,
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


@pytest.fixture
def client(app):
    return isolated_client(app)


def _signed_in(app, enrolled):
    client = isolated_client(app)
    assert sign_in(client, enrolled.token, pin=None).status_code == 302
    return client


def _response(session, tp, instrument=C30):
    session.expire_all()
    return session.scalar(
        select(Response).where(
            Response.timepoint_id == tp.id, Response.instrument_id == instrument, Response.revision == 0
        )
    )


def _stored_answers(session, response):
    rows = session.scalars(select(Answer).where(Answer.response_id == response.id)).all()
    return {a.item_id: (None if a.skipped else int(a.value)) for a in rows}


def test_submit_scores_and_reads_only_afterwards(app, factory, session, now):
    enrolled = factory.patient(pin=None, language="en")
    tp = factory.timepoint(enrolled, respondent="self")
    client = _signed_in(app, enrolled)
    answers = dict(C30_ANSWERS)
    del answers["q7"]  # left out: becomes an explicit skip after the reminder
    review = fill_form(client, tp.id, C30, answers)
    page = client.get(review).get_data(as_text=True)
    assert "Check your answers" in page and "You left out these questions" in page
    assert page.count("<li>") == 1 and "<li>7. " in page  # only what was left out is listed
    sent = submit_form(client, review)
    assert sent.status_code == 302 and sent.headers["Location"].endswith(f"/p/t/{tp.id}/done")
    done = client.get(sent.headers["Location"]).get_data(as_text=True)
    assert "Your answers were sent" in done

    response = _response(session, tp)
    assert (response.status, response.submitted_at, response.scoring_error) == ("submitted", now, None)
    stored = _stored_answers(session, response)
    assert stored["q7"] is None and len(stored) == 30
    expected = score(C30, stored, version=response.instrument_version)
    scores = {s.scale: s for s in session.scalars(select(Score).where(Score.response_id == response.id))}
    assert {k: s.value for k, s in scores.items()} == expected
    assert scores["RF2"].n_items == 1 and scores["PF2"].n_items == 5
    assert {s.scoring_version for s in scores.values()} == {SCORING_VERSION}
    assert session.get(Timepoint, tp.id).status == "completed"
    assert session.get(Timepoint, tp.id).completed_at == now

    # Read-only now: pages and review answer "already sent", and a stale POST changes nothing.
    for url in (f"/p/t/{tp.id}/{C30}/1", review):
        assert "already sent" in client.get(url).get_data(as_text=True)
    csrf = page_form(client.get("/p/").get_data(as_text=True))
    resent = client.post(f"/p/t/{tp.id}/{C30}/1", data=csrf | {"q1": "4", "nav": "next"})
    assert resent.status_code == 200 and "already sent" in resent.get_data(as_text=True)
    assert _stored_answers(session, _response(session, tp))["q1"] == stored["q1"]


def test_double_submit_gives_one_submission(app, factory, session):
    enrolled = factory.patient(pin=None, language="en")
    tp = factory.timepoint(enrolled, respondent="self")
    client = _signed_in(app, enrolled)
    review = fill_form(client, tp.id, C30, C30_ANSWERS)
    data = page_form(client.get(review).get_data(as_text=True))
    first, second = client.post(review, data=data), client.post(review, data=data)
    assert first.status_code == 302
    assert second.status_code == 200 and "already sent" in second.get_data(as_text=True)
    assert (
        session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "submit_response")) == 1
    )


def test_a_visit_of_three_forms_is_one_send_and_three_responses(app, factory, session):
    enrolled = factory.patient(pin=None, language="en")
    tp = factory.timepoint(enrolled, instruments=[C30, "eortc_qlq_bn20", "eq5d5l"], respondent="self")
    client = _signed_in(app, enrolled)
    eq = {"mo": 1, "sc": 1, "ua": 2, "pd": 1, "ad": 1, "vas": 70}
    first = client.get(f"/p/t/{tp.id}/{C30}/1").get_data(as_text=True)
    urls = fill_visit(client, tp.id, C30_ANSWERS | eq)  # the BN20 shares item ids q1-q20
    total = len(urls) - 1
    assert f"Page 1 of {total}" in first
    assert [u for u in urls if "/eq5d5l/" in u][0].endswith("/eq5d5l/1")  # straight on after the BN20
    assert session.get(Timepoint, tp.id).status == "open"
    review = urls[-1]
    sent = submit_form(client, review)
    assert sent.status_code == 302 and sent.headers["Location"].endswith(f"/p/t/{tp.id}/done")
    assert "Your answers were sent" in client.get(sent.headers["Location"]).get_data(as_text=True)
    session.expire_all()
    assert session.get(Timepoint, tp.id).status == "completed"
    rows = session.scalars(select(Response).where(Response.timepoint_id == tp.id)).all()
    assert sorted((r.instrument_id, r.status) for r in rows) == [
        ("eortc_qlq_bn20", "submitted"),
        (C30, "submitted"),
        ("eq5d5l", "submitted"),
    ]
    eq_row = _response(session, tp, "eq5d5l")
    values = {s.scale: s.value for s in session.scalars(select(Score).where(Score.response_id == eq_row.id))}
    assert values["VAS"] == 70 and values["INDEX"] == pytest.approx(0.955, abs=1e-3)
    again = client.post(review, data=page_form(client.get("/p/").get_data(as_text=True)))
    assert again.status_code == 200 and "already sent" in again.get_data(as_text=True)
    assert (
        session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "submit_response")) == 3
    )
    assert client.get("/p/").get_data(as_text=True).count('href="/p/t/') == 0


def test_scoring_failure_is_flagged_not_blocking(app, factory, session, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("scorer bug")

    monkeypatch.setattr("qol_app.services.responses.score_detail", broken)
    enrolled = factory.patient(pin=None, language="en")
    tp = factory.timepoint(enrolled, respondent="self")
    client = _signed_in(app, enrolled)
    sent = submit_form(client, fill_form(client, tp.id, C30, C30_ANSWERS))
    assert sent.status_code == 302
    response = _response(session, tp)
    assert response.status == "submitted" and "scorer bug" in response.scoring_error
    assert len(_stored_answers(session, response)) == 30
    assert session.scalar(select(func.count()).select_from(Score).where(Score.response_id == response.id)) == 0
    assert session.get(Timepoint, tp.id).status == "completed"


def staff(session, role, sites, **kw):
    """A staff row without a real password hash (these tests never sign staff in; Argon2 is slow)."""
    user = StaffUser(
        username=f"{role}-{uuid.uuid4().hex[:8]}", full_name="Test", role=role, password_hash="unused", **kw
    )
    user.memberships = [SiteMembership(site_id=s.id) for s in sites]
    session.add(user)
    session.flush()
    return user


def _site_with_nurses(factory):
    site = factory.site(emergency_phone="120", contact_phone="021-1234-5678")
    other = factory.site()
    session = factory.session
    nurses = [
        staff(session, "nurse", [site], email="n1@example.org"),
        staff(session, "nurse", [site], email="n2@example.org", phone="13800000000"),
        staff(session, "nurse", [site]),
    ]  # no contact details: sees it on the list only
    staff(session, "nurse", [site], email="gone@example.org", active=False)
    staff(session, "investigator", [site], email="pi@example.org")
    staff(session, "nurse", [other], email="elsewhere@example.org")
    return site, nurses


def test_red_diary_shows_emergency_page_and_notifies_site_nurses(app, factory, session, now):
    site, nurses = _site_with_nurses(factory)
    enrolled = factory.patient(site, pin=None, language="zh_Hans", arm="A")
    tp = factory.timepoint(
        enrolled, instruments=["symptom_diary"], respondent="proxy", respondent_relationship="spouse_partner"
    )
    client = _signed_in(app, enrolled)
    sent = submit_form(client, fill_form(client, tp.id, "symptom_diary", CALM_DIARY | {"seizure": 1}))
    page = client.get(sent.headers["Location"])
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and 'href="tel:120"' in body and "癫痫发作" in body
    assert 'href="tel:021-1234-5678"' in body

    alert = session.scalar(select(Alert).where(Alert.patient_id == enrolled.patient.id))
    assert (alert.level, alert.initial_level, alert.raised_at) == ("red", "red", now)
    assert alert.triggering_answers == {"seizure": 1}
    assert [r["id"] for r in alert.rules] == ["red_seizure"]
    messages = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert {(m.recipient, m.channel) for m in messages} == {
        ("n1@example.org", "email"),
        ("n2@example.org", "email"),
        ("13800000000", "sms"),
    }
    assert {m.dedupe_key for m in messages} >= {f"alert:{alert.id}:{nurses[0].id}:email"}
    assert all(m.kind == "alert" and m.patient_id == enrolled.patient.id for m in messages)
    assert all("seizure" not in m.body.lower() for m in messages)  # clinical details stay in the app


def test_amber_diary_raises_alert_without_emergency_page(app, factory, session):
    site, _ = _site_with_nurses(factory)
    enrolled = factory.patient(site, pin=None, language="en", arm="B")
    tp = factory.timepoint(enrolled, instruments=["symptom_diary"], respondent="self")
    client = _signed_in(app, enrolled)
    sent = submit_form(client, fill_form(client, tp.id, "symptom_diary", CALM_DIARY | {"nausea": 3}))
    body = client.get(sent.headers["Location"]).get_data(as_text=True)
    assert "Your answers were sent" in body and "Please call for medical help now" not in body
    alert = session.scalar(select(Alert).where(Alert.patient_id == enrolled.patient.id))
    assert (alert.level, alert.triggering_answers) == ("amber", {"nausea": 3})
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_calm_diary_raises_nothing(app, factory, session):
    enrolled = factory.patient(pin=None, language="en", arm="A")
    tp = factory.timepoint(enrolled, instruments=["symptom_diary"], respondent="self")
    client = _signed_in(app, enrolled)
    submit_form(client, fill_form(client, tp.id, "symptom_diary", CALM_DIARY))
    assert session.scalar(select(func.count()).select_from(Alert)) == 0
    scores = {s.scale: s.value for s in session.scalars(select(Score))}
    assert scores["WORST"] == 1 and scores["temperature"] is None


# ---------------------------------------------------------------- real concurrency


@pytest.fixture
def committed(committing_app, now):
    from qol_app.db import db

    factory = Factory(db.session, now)
    enrolled = factory.patient(pin=None, language="en")
    tp = factory.timepoint(enrolled, respondent="self")
    db.session.commit()
    return committing_app, enrolled, tp


def test_two_devices_submitting_at_once_give_one_submission(committed):
    from qol_app.db import db

    app, enrolled, tp = committed
    phone, tablet = _signed_in(app, enrolled), _signed_in(app, enrolled)
    review = fill_form(phone, tp.id, C30, C30_ANSWERS)
    forms = [page_form(c.get(review).get_data(as_text=True)) for c in (phone, tablet)]
    barrier = threading.Barrier(2)

    def send(pair):
        client, data = pair
        barrier.wait()
        return client.post(review, data=data)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(send, zip((phone, tablet), forms)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 302], [r.get_data(as_text=True)[:300] for r in results]
    loser = next(r for r in results if r.status_code == 200)
    assert "already sent" in loser.get_data(as_text=True)
    db.session.expire_all()
    responses = db.session.scalars(select(Response).where(Response.timepoint_id == tp.id)).all()
    assert [(r.status, r.revision) for r in responses] == [("submitted", 0)]
    assert (
        db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "submit_response"))
        == 1
    )
    assert db.session.scalar(select(func.count()).select_from(Score)) == len(score(C30, C30_ANSWERS))


def test_two_devices_starting_at_once_share_one_form(committed):
    from qol_app.db import db

    app, enrolled, tp = committed
    clients = [_signed_in(app, enrolled) for _ in range(2)]
    url = f"/p/t/{tp.id}/{C30}/1"
    forms = [page_form(c.get(url).get_data(as_text=True)) for c in clients]
    barrier = threading.Barrier(2)

    def send(args):
        client, data, value = args
        barrier.wait()
        return client.post(url, data=data | {"nav": "next"} | {f"q{i}": str(value) for i in range(1, 6)})

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(send, [(clients[0], forms[0], 1), (clients[1], forms[1], 2)]))
    assert [r.status_code for r in results] == [302, 302]
    db.session.expire_all()
    responses = db.session.scalars(select(Response).where(Response.timepoint_id == tp.id)).all()
    assert len(responses) == 1
    values = {a.value for a in db.session.scalars(select(Answer).where(Answer.response_id == responses[0].id))}
    assert len(db.session.scalars(select(Answer)).all()) == 5 and values in ({1.0}, {2.0})


def test_overdue_timepoint_can_still_be_sent(app, factory, session, now):
    enrolled = factory.patient(pin=None, language="en")
    tp = factory.timepoint(
        enrolled,
        respondent="self",
        closes_at=now - dt.timedelta(hours=1),
        grace_closes_at=now + dt.timedelta(days=1),
        status="overdue",
    )
    client = _signed_in(app, enrolled)
    assert submit_form(client, fill_form(client, tp.id, "eortc_qlq_c30", C30_ANSWERS)).status_code == 302
    session.expire_all()
    assert session.get(Timepoint, tp.id).status == "completed"


def test_the_visit_review_lists_a_form_never_opened(app, factory, session):
    enrolled = factory.patient(pin=None, language="en")
    tp = factory.timepoint(enrolled, instruments=[C30, "eq5d5l"], respondent="self")
    client = _signed_in(app, enrolled)
    url = f"/p/t/{tp.id}/{C30}/1"
    for _ in range(20):  # the QLQ-C30 only, then straight to the review
        response = send_page(client, url, C30_ANSWERS)
        url = response.headers["Location"]
        if "/eq5d5l/" in url:
            break
    review = client.get(f"/p/t/{tp.id}/submit").get_data(as_text=True)
    assert "You left out these questions" in review and review.count('href="/p/t/') >= 2
    assert f'href="/p/t/{tp.id}/eq5d5l/1"' in review
