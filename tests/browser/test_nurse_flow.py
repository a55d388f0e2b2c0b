"""A nurse on a tablet-sized Chromium: sign in, enrol, see the QR card, record an intrathecal dose,
see the new diary timepoints, re-issue the card, acknowledge a red alert. The pages ship no
JavaScript, pass axe (WCAG 2.1 AA) and do not scroll sideways at tablet width. Uses the live server of ``tests/browser/conftest.py``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_nurse")]  # one browser, one worker

TABLET = {"width": 768, "height": 1024}
PASSWORD = "browser nurse password"


@dataclasses.dataclass
class Seed:
    username: str
    alert_patient: str
    today: dt.date


@pytest.fixture(scope="module")
def nurse_seed(live_server) -> Seed:
    from qol_app.db import db, utcnow
    from qol_app.models import Alert, Site
    from qol_app.services import staff
    from qol_app.services.audit import Actor
    from qol_app.services.enrolment import enroll_patient

    with live_server.app.app_context():
        now = utcnow()
        today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
        site = Site(code="BR1", name="Browser hospital", timezone="Asia/Shanghai", emergency_phone="120")
        db.session.add(site)
        db.session.flush()
        actor = Actor.system("tests")
        staff.create_user(
            db.session,
            actor,
            username="nurse.browser",
            full_name="Browser Nurse",
            role="nurse",
            password=PASSWORD,
            sites=[site],
            now=now,
        )
        patient = enroll_patient(
            db.session,
            actor,
            study_id="BR1-900",
            site=site,
            arm="A",
            randomization_date=today - dt.timedelta(days=20),
            language="zh_Hans",
            now=now,
            with_pin=False,
        ).patient
        db.session.add(
            Alert(
                patient_id=patient.id,
                level="red",
                initial_level="red",
                rules=[{"id": "seizure"}],
                triggering_answers={"seizure": 1},
                raised_at=now,
            )
        )
        db.session.commit()
    return Seed("nurse.browser", "BR1-900", today)


AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


def _accessible(page, label: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    assert page.locator("script").count() == 0, f"{label}: staff pages need no JavaScript"
    results = Axe().run(page, options=AXE_OPTIONS)
    assert results.violations_count == 0, f"{label} ({page.url}):\n{results.generate_report()}"


def _no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1")


def test_nurse_flow(browser, live_server, nurse_seed):
    # JavaScript stays on only for axe; the staff pages ship none (checked on each page).
    context = browser.new_context(viewport=TABLET, locale="en-GB")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{live_server.url}/staff/login")
    _accessible(page, "sign-in")
    page.fill("#username", nurse_seed.username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url("**/staff/")
    assert page.locator("h3.wl-red").count() == 1  # the red alert heads the work list
    assert _no_sideways_scroll(page)
    _accessible(page, "dashboard")

    # Enrol a patient and see the personal link once, as a QR card with the PIN.
    page.click("nav >> text=Enrol")
    _accessible(page, "enrol")
    page.fill("#study_id", "BR1-001")
    page.check("#arm-0")
    page.fill("#randomization_date", (nurse_seed.today - dt.timedelta(days=10)).isoformat())
    page.select_option("#language", "zh_Hans")
    page.click("button[type=submit].primary")
    card = page.locator("section.card")
    assert card.is_visible() and card.get_attribute("lang") == "zh-Hans"
    assert page.locator("section.card svg.qr").is_visible()
    assert page.locator("section.card .pin strong").inner_text().isdigit()
    link = page.locator("section.card code").inner_text()
    assert "/p/l/" in link
    _accessible(page, "card")

    # Record an intrathecal dose yesterday: seven diary days appear on the timeline.
    page.click("text=Done: go to the patient's page")
    dose = nurse_seed.today - dt.timedelta(days=1)
    page.select_option("#kind", "intrathecal_dose")
    page.fill("#date", dose.isoformat())
    page.click("#events button[type=submit]")
    timeline = page.locator("#timeline").inner_text()
    for day in range(1, 8):
        assert f"Diary {(dose + dt.timedelta(days=day)).isoformat()}" in timeline
    assert _no_sideways_scroll(page)
    _accessible(page, "patient page")

    # Re-issue the card: a new link (reason required) and the QR again.
    page.fill("#rotate-reason", "card lost")
    page.click("#access form >> nth=0 >> button")
    assert page.locator("section.card svg.qr").is_visible()
    assert page.locator("section.card code").inner_text() != link

    # Acknowledge the red alert from the dashboard.
    page.click("nav >> text=Dashboard")
    page.click(f"ul.wl-red >> text={nurse_seed.alert_patient}")
    page.fill("#alerts textarea", "Phoned the patient; sent to the emergency room")
    page.click("#alerts button[type=submit]")
    assert "Acknowledged by Browser Nurse" in page.locator("#alerts").inner_text()
    page.click("nav >> text=Dashboard")
    assert page.locator("h3.wl-red").count() == 0
    assert not [p for p in problems if "Content Security Policy" in p], problems
    context.close()


def test_call_task_from_the_work_list(browser, live_server, nurse_seed):
    """A call task: the dashboard links to it, the page gives the number as a tel: link and takes
    the outcome; afterwards the task has left the list. Accessible at tablet width."""
    from qol_app.db import db, utcnow
    from qol_app.models import OutboxMessage, Patient, Timepoint

    with live_server.app.app_context():
        now = utcnow()
        patient = db.session.query(Patient).filter_by(study_id=nurse_seed.alert_patient).one()
        patient.phone = "138 0000 0099"
        tp = Timepoint(
            patient_id=patient.id,
            key="sys-c9",
            rule_id="post_cycle",
            kind="questionnaire",
            instruments=["eortc_qlq_c30"],
            anchor_kind="systemic_cycle",
            anchor_date=nurse_seed.today,
            target_date=nurse_seed.today,
            window_start=nurse_seed.today - dt.timedelta(days=3),
            window_end=nurse_seed.today,
            grace_end=nurse_seed.today + dt.timedelta(days=3),
            opens_at=now - dt.timedelta(days=3),
            closes_at=now + dt.timedelta(hours=12),
            grace_closes_at=now + dt.timedelta(days=3),
            status="open",
            created_at=now,
        )
        db.session.add(tp)
        db.session.flush()
        db.session.add(
            OutboxMessage(
                dedupe_key=f"tp:{tp.id}:browser:call",
                kind="call_task",
                channel="task",
                patient_id=patient.id,
                timepoint_id=tp.id,
                language="en",
                subject="call",
                body="call",
                status="open",
                created_at=now,
                step="call",
            )
        )
        db.session.commit()

    context = browser.new_context(viewport=TABLET, locale="en-GB")
    page = context.new_page()
    page.goto(f"{live_server.url}/staff/login")
    page.fill("#username", nurse_seed.username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url("**/staff/")
    page.click(f"ul.wl-call >> text=Call {nurse_seed.alert_patient}")
    assert page.locator('a[href="tel:13800000099"]').count() >= 1
    assert _no_sideways_scroll(page)
    _accessible(page, "call task")
    page.check("input[value=no_answer]")
    page.fill("#note", "rang twice")
    page.click("button[type=submit].primary")
    page.wait_for_url("**/staff/#worklist")
    assert page.locator("ul.wl-call").count() == 0
    page.goto(f"{live_server.url}/staff/patients/{patient.id}#messages")
    assert "No answer" in page.locator("#messages").inner_text()
    _accessible(page, "patient page with messages")
    context.close()
