"""The patient-ownership matrix: every patient route, with another patient's sub-ids, is a 404.

Patient A is signed in; patient B (same site, same forms) has a timepoint with a started form.
Every route of the patient blueprint that takes a timepoint is asked, by GET and POST, with B's
timepoint (and, for A's own timepoint, an instrument it does not hold and a page that does not
exist). Each must answer 404, show nothing of B's, and change nothing of B's. The routes come from
``url_map``, so a new one is covered (or fails the test) without anyone remembering to add it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from qol_app.models import Answer, AuditEvent, Response, Timepoint
from qol_app.services import responses
from qol_app.services.audit import Actor
from tests.factories import isolated_client, sign_in

EQ5D = "eq5d5l"
EQ = {"mo": "2", "sc": "2", "ua": "2", "pd": "2", "ad": "2", "vas": "42", "respondent": "self", "nav": "next"}


@pytest.fixture
def two_patients(app, factory, session, now):
    app.config["WTF_CSRF_ENABLED"] = False
    site = factory.site()
    a = factory.patient(site, pin=None, language="en", study_id="OWN-A")
    b = factory.patient(site, pin=None, language="en", study_id="OWN-B")
    tp_a = factory.timepoint(a, instruments=[EQ5D], respondent="self")
    tp_b = factory.timepoint(b, instruments=[EQ5D], respondent="self")
    actor = Actor("patient", str(b.patient.id))
    texts = responses.localized(session, responses.registry().get(EQ5D), "en")
    started = responses.start_response(session, actor, tp_b, texts, now)
    responses.save_page(session, actor, started, ["mo"], {"mo": 5}, now)
    client = isolated_client(app)
    assert sign_in(client, a.token, pin=None).status_code == 302
    return client, a, b, tp_a, tp_b


def _b_state(session, b, tp_b):
    session.expire_all()
    return (
        session.scalar(select(func.count()).select_from(Response).where(Response.patient_id == b.patient.id)),
        sorted(
            session.execute(
                select(Answer.item_id, Answer.value, Answer.answered_at)
                .join(Response)
                .where(Response.patient_id == b.patient.id)
            ).all()
        ),
        session.get(Timepoint, tp_b.id).respondent,
        session.get(Timepoint, tp_b.id).status,
        session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.patient_id == b.patient.id)),
    )


def _url(rule, tp_id, instrument=EQ5D, page_no=1):
    values = {"timepoint_id": tp_id, "instrument_id": instrument, "page_no": page_no}
    return rule.build({k: v for k, v in values.items() if k in rule.arguments})[1]


def test_another_patients_timepoint_is_a_404_on_every_route(app, session, two_patients):
    client, a, b, tp_a, tp_b = two_patients
    before = _b_state(session, b, tp_b)
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("patient.") and "timepoint_id" in r.arguments]
    assert {r.endpoint for r in rules} >= {
        "patient.start",
        "patient.respondent",
        "patient.page",
        "patient.review",
        "patient.done",
    }
    checked = 0
    for rule in rules:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            url = _url(rule, tp_b.id)
            response = client.open(url, method=method, data=EQ if method == "POST" else None)
            assert response.status_code == 404, f"{method} {url}: {response.status_code}"
            body = response.get_data(as_text=True)
            assert b.patient.study_id not in body and 'value="5"' not in body
            checked += 1
    assert checked >= 8
    assert _b_state(session, b, tp_b) == before, "patient B's data changed"
    # The same requests on A's own timepoint do reach the form (so the 404s above mean "not yours").
    assert client.get(_url(app.url_map._rules_by_endpoint["patient.page"][0], tp_a.id)).status_code == 200


def test_foreign_sub_ids_within_ones_own_timepoint(app, session, two_patients):
    client, a, b, tp_a, tp_b = two_patients
    page = app.url_map._rules_by_endpoint["patient.page"][0]
    moved = app.url_map._rules_by_endpoint["patient.form_pages_moved"][0]
    for url in (
        _url(page, tp_a.id, instrument="eortc_qlq_c30"),  # an instrument this timepoint does not hold
        _url(page, tp_a.id, instrument="no_such_instrument"),
        _url(page, tp_a.id, page_no=99),
        _url(page, tp_a.id, page_no=0),
    ):
        for method in ("GET", "POST"):
            assert client.open(url, method=method, data=EQ).status_code == 404, (method, url)
    assert client.get(_url(moved, tp_a.id, instrument="eortc_qlq_c30")).status_code == 404
    assert session.scalar(select(func.count()).select_from(Response).where(Response.timepoint_id == tp_a.id)) == 0


def test_signed_out_answers_for_another_patients_timepoint_show_nothing(app, session, two_patients):
    client, a, b, tp_a, tp_b = two_patients
    client.post("/p/logout")
    page = app.url_map._rules_by_endpoint["patient.page"][0]
    response = client.post(_url(page, tp_b.id), data=EQ)
    assert response.status_code == 401
    assert 'value="5"' not in response.get_data(as_text=True)
    assert sign_in(client, a.token, pin=None).headers["Location"].endswith("/p/")  # nothing of B's handed to A
