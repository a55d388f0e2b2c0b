"""Every patient page type: small enough for a weak connection, no inline script or style."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from qol_app.services import responses as svc
from qol_app.services.audit import Actor
from tests.factories import isolated_client, sign_in

STATIC = Path(__file__).resolve().parents[2] / "qol_app" / "static"
BUDGET = 20 * 1024


def _gz(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6))


def _answer(session, enrolled, tp, instrument, answers, now, *, submit):
    actor = Actor("patient", str(enrolled.patient.id))
    texts = svc.localized(session, svc.registry().get(instrument), enrolled.patient.language)
    response = svc.start_response(session, actor, tp, texts, now)
    svc.save_page(session, actor, response, list(answers), answers, now)
    if submit:
        svc.submit(session, actor, response, enrolled.patient, now)


@pytest.mark.parametrize("language", ["zh_Hans", "en"])
def test_every_page_type_fits_the_budget_without_inline_code(app, factory, session, now, language):
    enrolled = factory.patient(pin=None, language=language, arm="A")
    c30 = factory.timepoint(enrolled)
    half = factory.timepoint(enrolled, respondent="self")
    _answer(session, enrolled, half, "eortc_qlq_c30", {"q1": 2}, now, submit=False)
    sent = factory.timepoint(enrolled, instruments=["eq5d5l"], respondent="self")
    _answer(session, enrolled, sent, "eq5d5l", {"mo": 1, "vas": 50}, now, submit=True)
    diary = factory.timepoint(enrolled, instruments=["symptom_diary"], respondent="self")
    _answer(session, enrolled, diary, "symptom_diary", {"seizure": 1}, now, submit=True)
    closed = factory.timepoint(enrolled, respondent="self", status="missed")

    client = isolated_client(app)
    pages = {"link": client.get(f"/p/l/{enrolled.token}"), "bad link": client.get("/p/l/nope")}
    assert sign_in(client, enrolled.token, pin=None).status_code == 302
    pages |= {
        "home": client.get("/p/"),
        "respondent": client.get(f"/p/t/{c30.id}/respondent"),
        "page": client.get(f"/p/t/{half.id}/eortc_qlq_c30/1"),
        "reminder": client.get(f"/p/t/{half.id}/eortc_qlq_c30/1?missing=q2.q3.q4.q5"),
        "review": client.get(f"/p/t/{half.id}/submit"),
        "confirmation": client.get(f"/p/t/{sent.id}/done"),
        "already sent": client.get(f"/p/t/{sent.id}/eq5d5l/1"),
        "emergency": client.get(f"/p/t/{diary.id}/done"),
        "call": client.get(f"/p/t/{diary.id}/call"),
        "closed": client.get(f"/p/t/{closed.id}/eortc_qlq_c30/1"),
        "not found": client.get("/p/t/999999"),
    }
    css = {name: (STATIC / name).read_bytes() for name in ("app.css", "patient.css", "patient.js")}
    for name, response in pages.items():
        html = response.get_data()
        text = html.decode()
        assert response.status_code in (200, 404, 410), (name, response.status_code)
        assert "patient.css" in text, name
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"{name}: inline script"
        assert "style=" not in text and "<style" not in text, f"{name}: inline style"
        assert re.search(r' on[a-z]+="', text) is None, f"{name}: inline event handler"
        linked = [f for f in css if f in text]
        total = _gz(html) + sum(_gz(css[f]) for f in linked)
        assert total <= BUDGET, f"{name}: {total} bytes gzipped (page + {linked})"
    assert 'lang="zh-Hans"' in pages["page"].get_data(as_text=True) or language == "en"
