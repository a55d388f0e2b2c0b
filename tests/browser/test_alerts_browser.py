"""Alerts from every stored diary answer, in a real Chromium: a patient saves a page with a seizure and
closes the browser before the review; a nurse enters a paper diary; a nurse corrects a sent one.

Each time there is exactly one red alert, nurses are notified at once, and the nurse's patient page
says where the answers came from. Uses the live server of ``tests/browser/conftest.py``.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from sqlalchemy import func, select

pytestmark = pytest.mark.browser

SMALL = {"width": 320, "height": 640}
DIARY = "symptom_diary"
PASSWORD = "browser alert nurse password"
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
CALM = {"temperature": 36.6} | {
    i: 0
    for i in [
        "chills",
        "headache",
        "neck_stiffness",
        "nausea",
        "vomiting",
        "back_pain",
        "vision",
        "new_weakness",
        "bladder_bowel",
        "confusion",
        "seizure",
        "ommaya_site",
    ]
}


@dataclasses.dataclass
class Seed:
    token: str
    patient_id: int
    diary_tp: int
    seizure_page: int
    paper_tp: int
    sent_response: int


@pytest.fixture(scope="module")
def alert_seed(live_server) -> Seed:
    from qol_app.db import db, utcnow
    from qol_app.services import responses as svc
    from qol_app.services import staff
    from qol_app.services.audit import Actor
    from tests.factories import Factory

    with live_server.app.app_context():
        now = utcnow()
        factory = Factory(db.session, now)
        site = factory.site(code="AL1", contact_phone="021-5555-0199", emergency_phone="120")
        staff.create_user(
            db.session,
            Actor.system("tests"),
            username="nurse.alerts",
            full_name="Alert Nurse",
            role="nurse",
            password=PASSWORD,
            sites=[site],
            now=now,
        )
        db.session.flush()
        from qol_app.models import StaffUser

        nurse = db.session.scalar(select(StaffUser).where(StaffUser.username == "nurse.alerts"))
        nurse.email = "alerts@example.org"
        enrolled = factory.patient(site, language="zh_Hans", pin=None, arm="A")
        patient = enrolled.patient
        diary = factory.timepoint(patient, instruments=[DIARY], respondent="self")
        paper = factory.timepoint(patient, instruments=[DIARY])
        sent_tp = factory.timepoint(patient, instruments=[DIARY], respondent="self")
        actor = Actor("patient", str(patient.id))
        instrument = svc.registry().get(DIARY)
        texts = svc.localized(db.session, instrument, patient.language)
        response = svc.start_response(db.session, actor, sent_tp, texts, now)
        svc.save_page(db.session, actor, response, list(CALM), CALM, now)
        svc.submit(db.session, actor, response, patient, now)
        seizure_page = next(p.number for p in svc.page_plan(instrument, patient) if "seizure" in p.item_ids)
        db.session.commit()
        return Seed(enrolled.token, patient.id, diary.id, seizure_page, paper.id, response.id)


def _alerts(app, patient_id):
    from qol_app.db import db
    from qol_app.models import Alert

    with app.app_context():
        rows = db.session.scalars(select(Alert).where(Alert.patient_id == patient_id).order_by(Alert.id)).all()
        db.session.expunge_all()
        return rows


def _alert_messages(app, alert_id):
    from qol_app.db import db
    from qol_app.models import OutboxMessage

    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.dedupe_key.like(f"alert:{alert_id}:%"))
        )


def _nurse(browser, base):
    context = browser.new_context(viewport={"width": 768, "height": 1024})
    page = context.new_page()
    page.goto(f"{base}/staff/login")
    page.fill("#username", "nurse.alerts")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r".*/staff/.*"))
    return context, page


def test_a_saved_seizure_page_alerts_even_if_the_browser_is_closed(browser, live_server, alert_seed):
    from axe_playwright_python.sync_playwright import Axe

    base, seed = live_server.url, alert_seed
    context = browser.new_context(viewport=SMALL, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{base}/p/l/{seed.token}")
    page.locator("main button[type=submit].primary").click()
    page.goto(f"{base}/p/t/{seed.diary_tp}/{DIARY}/{seed.seizure_page}")
    page.check("input[name=seizure][value='1']")
    page.locator("main button[name=nav][value=next]").click()
    page.wait_for_url(re.compile(rf".*/p/t/{seed.diary_tp}/call$"))
    call = page.locator("a.call")
    assert call.get_attribute("href") == "tel:120"
    box = call.bounding_box()
    assert box["height"] >= 44 and box["width"] >= 44
    results = Axe().run(page, options=AXE_OPTIONS)
    assert results.violations_count == 0, results.generate_report()
    context.close()  # the patient never reaches the review page

    (alert,) = _alerts(live_server.app, seed.patient_id)
    assert (alert.level, alert.source) == ("red", "saved_not_sent")
    assert _alert_messages(live_server.app, alert.id) >= 1  # the site's nurse is told at once

    nurse_context, nurse = _nurse(browser, base)
    nurse.goto(f"{base}/staff/patients/{seed.patient_id}#alerts")
    assert "saved, not sent" in nurse.locator("#alerts").inner_text()
    nurse_context.close()

    # The patient comes back later and sends the diary: still one alert.
    context = browser.new_context(viewport=SMALL, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{base}/p/l/{seed.token}")
    page.locator("main button[type=submit].primary").click()
    page.goto(f"{base}/p/t/{seed.diary_tp}/submit")
    page.locator("main form button[type=submit].primary").click()
    page.wait_for_url(re.compile(r".*/done$"))
    assert page.locator("a.call").count() == 1
    context.close()
    alerts = _alerts(live_server.app, seed.patient_id)
    assert [(a.id, a.level) for a in alerts] == [(alert.id, "red")]


def test_staff_entry_and_correction_alert_too(browser, live_server, alert_seed):
    base, seed = live_server.url, alert_seed
    before = {a.id for a in _alerts(live_server.app, seed.patient_id)}
    context, page = _nurse(browser, base)
    page.goto(f"{base}/staff/patients/{seed.patient_id}/timepoints/{seed.paper_tp}/enter/{DIARY}")
    page.check("input[name=entry_mode][value=paper_transcribed]")
    page.check("input[name=entry_respondent][value=self]")
    page.fill("input[name=temperature]", "38.5")
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r".*/staff/patients/\d+.*"))
    entered = [a for a in _alerts(live_server.app, seed.patient_id) if a.id not in before]
    assert [(a.level, a.source) for a in entered] == [("red", "staff_entry")]
    assert "entered by staff" in page.locator("#alerts").inner_text()

    page.goto(f"{base}/staff/patients/{seed.patient_id}/responses/{seed.sent_response}/correct")
    page.check("input[name=seizure][value='1']")
    page.fill("textarea[name=correction_reason]", "patient said on the phone she had a fit")
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r".*/staff/patients/\d+.*"))
    corrected = [a for a in _alerts(live_server.app, seed.patient_id) if a.id not in before | {entered[0].id}]
    assert [(a.level, a.source) for a in corrected] == [("red", "correction")]
    assert _alert_messages(live_server.app, corrected[0].id) >= 1
    assert "raised by a staff correction" in page.locator("#alerts").inner_text()
    context.close()
