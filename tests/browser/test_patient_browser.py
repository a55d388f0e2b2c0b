"""A phone-sized Chromium fills the QLQ-C30 in Chinese; every patient page type passes axe (WCAG 2.1 AA)
and does not scroll sideways at 320 px or at 200 % zoom."""

from __future__ import annotations

import dataclasses
import re

import pytest
from sqlalchemy import select

from qol_app.models import Response
from qol_app.services import responses as svc
from qol_app.services.audit import Actor
from tests.factories import Factory

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_patient")]  # one browser, one worker

PHONE = {"width": 390, "height": 844}
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
C30 = "eortc_qlq_c30"


@dataclasses.dataclass
class Seed:
    main_token: str
    main_pin: str
    main_tp: int
    layout_token: str
    urls: dict[str, str]  # page type -> path, for the layout patient
    red_token: str
    red_done: str


def _answer(session, patient, tp, instrument, answers, now, *, submit):
    actor = Actor("patient", str(patient.id))
    texts = svc.localized(session, svc.registry().get(instrument), patient.language)
    response = svc.start_response(session, actor, tp, texts, now)
    items = svc.presented_items(svc.registry().get(instrument), patient)
    svc.save_page(session, actor, response, [i for i in items if i in answers], answers, now)
    if submit:
        svc.submit(session, actor, response, patient, now)


@pytest.fixture(scope="module")
def seed(live_server) -> Seed:
    from qol_app.db import db, utcnow

    with live_server.app.app_context():
        now = utcnow()
        factory = Factory(db.session, now)
        site = factory.site(contact_phone="021-5555-0100", emergency_phone="120")
        main = factory.patient(site, language="zh_Hans", pin="246810")
        main_tp = factory.timepoint(main)

        layout_enrolled = factory.patient(site, language="zh_Hans", pin=None)
        layout = layout_enrolled.patient
        who = factory.timepoint(layout)
        half = factory.timepoint(layout, respondent="self")
        _answer(db.session, layout, half, C30, {"q1": 2, "q2": 3}, now, submit=False)
        sent = factory.timepoint(layout, instruments=["eq5d5l"], respondent="self")
        _answer(
            db.session,
            layout,
            sent,
            "eq5d5l",
            {"mo": 1, "sc": 2, "ua": 1, "pd": 3, "ad": 1, "vas": 60},
            now,
            submit=True,
        )

        red = factory.patient(site, language="zh_Hans", pin=None, arm="A")
        diary = factory.timepoint(red, instruments=["symptom_diary"], respondent="self")
        _answer(db.session, red.patient, diary, "symptom_diary", {"seizure": 1, "headache": 2}, now, submit=True)
        db.session.commit()
    return Seed(
        main_token=main.token,
        main_pin="246810",
        main_tp=main_tp.id,
        layout_token=layout_enrolled.token,
        urls={
            "home": "/p/",
            "respondent": f"/p/t/{who.id}/respondent",
            "page": f"/p/t/{half.id}/{C30}/1",
            "reminder": f"/p/t/{half.id}/{C30}/1?missing=q3.q4.q5",
            "review": f"/p/t/{half.id}/submit",
            "confirmation": f"/p/t/{sent.id}/done",
            "not_found": "/p/t/999999",
        },
        red_token=red.token,
        red_done=f"/p/t/{diary.id}/done",
    )


def _sign_in(page, base: str, token: str, pin: str | None = None) -> None:
    page.goto(f"{base}/p/l/{token}")
    if pin:
        page.fill("#pin", pin)
    page.locator("main button[type=submit].primary").click()
    page.wait_for_url(re.compile(r".*/p/.*"))


def _accessible(page, label: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=AXE_OPTIONS)
    assert results.violations_count == 0, f"{label} ({page.url}):\n{results.generate_report()}"


def _no_sideways_scroll(page, label: str) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"{label} ({page.url}) scrolls sideways: {width}"


def test_fill_the_qlq_c30_in_chinese_on_a_phone(browser, live_server, seed):
    context = browser.new_context(viewport=PHONE, locale="zh-CN")
    page = context.new_page()
    base = live_server.url
    page.goto(f"{base}/p/l/{seed.main_token}")
    assert page.get_attribute("html", "lang") == "zh-Hans"
    _accessible(page, "link page")
    page.fill("#pin", seed.main_pin)
    page.locator("main button[type=submit].primary").click()
    page.wait_for_url(f"{base}/p/")
    assert seed.main_token not in page.url
    _accessible(page, "home")

    page.locator("main a.button").first.click()
    page.wait_for_url(re.compile(r".*/respondent$"))
    _accessible(page, "respondent question")
    page.check("input[name=respondent][value=self]")
    page.locator("main button[type=submit].primary").click()
    page.wait_for_url(re.compile(rf".*/{C30}/1$"))
    assert "长距离步行有困难" in page.content()
    _accessible(page, "survey page")

    page.locator("button[value=next]").click()  # nothing answered: the gentle reminder
    page.wait_for_url(re.compile(r".*missing=q1\.q2\.q3\.q4\.q5$"))
    _accessible(page, "skip reminder")

    for _page in range(7):
        for name in sorted(set(re.findall(r'name="(q\d+)" value', page.content()))):
            page.check(f"input[name={name}][value='{5 if name in ('q29', 'q30') else 2}']")
        with page.expect_navigation():
            page.locator("button[value=next]").click()
    assert page.url.endswith("/submit")
    _accessible(page, "review")
    page.locator("main button[type=submit].primary").click()
    page.wait_for_url(re.compile(r".*/done$"))
    assert page.locator("h1").inner_text().strip()
    _accessible(page, "confirmation")
    context.close()

    from qol_app.db import db

    with live_server.app.app_context():
        response = db.session.scalar(select(Response).where(Response.timepoint_id == seed.main_tp))
        assert (response.status, response.language) == ("submitted", "zh_Hans")
        assert response.client_utc_offset_minutes is not None  # the optional clock script ran


def test_emergency_and_error_pages_are_accessible(browser, live_server, seed):
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    base = live_server.url
    page.goto(f"{base}/p/l/not-a-valid-token")
    _accessible(page, "bad link page")
    _sign_in(page, base, seed.red_token)
    page.goto(base + seed.red_done)
    assert page.locator("a.call").get_attribute("href") == "tel:120"
    _accessible(page, "emergency page")
    page.goto(base + "/p/t/999999")
    _accessible(page, "not found page")
    page.goto(base + "/p/signed-out")
    context.close()


def test_no_horizontal_scroll_at_320px_and_200_percent_zoom(browser, live_server, seed):
    """Each page at 320 CSS px, then at 200 % zoom of the 390 px phone (195 CSS px: the same layout)."""
    context = browser.new_context(viewport={"width": 320, "height": 640})
    page = context.new_page()
    base = live_server.url

    def check(label: str) -> None:
        for width in (320, 195):
            page.set_viewport_size({"width": width, "height": 640})
            _no_sideways_scroll(page, f"{label} at {width}px")

    page.goto(f"{base}/p/l/{seed.main_token}")
    check("link page")
    page.goto(f"{base}/p/l/not-a-valid-token")
    check("bad link")
    _sign_in(page, base, seed.layout_token)
    for label, path in seed.urls.items():
        page.goto(base + path)
        check(label)
    _sign_in(page, base, seed.red_token)
    page.goto(base + seed.red_done)
    check("emergency")
    context.close()


def test_reminder_link_pages_on_a_small_phone(browser, live_server, seed):
    """A reminder's link: the sign-in page (PIN asked), then into the app; a superseded link's
    page is kind, accessible and does not scroll sideways at 320 px or 200 % zoom."""
    from sqlalchemy import select

    from qol_app.db import db, utcnow
    from qol_app.models import Patient, Timepoint
    from qol_app.services import reminder_links

    with live_server.app.app_context():
        now = utcnow()
        tp = db.session.get(Timepoint, seed.main_tp)
        patient = db.session.scalar(select(Patient).where(Patient.id == tp.patient_id))
        common = {
            "patient_id": patient.id,
            "timepoint_id": tp.id,
            "window": reminder_links.window_key(tp.opens_at, tp.closes_at),
            "expires_at": tp.grace_closes_at,
        }
        old = reminder_links.issue(db.session, now=now, **common)
        new = reminder_links.issue(db.session, now=now, **common)
        db.session.commit()
    context = browser.new_context(viewport={"width": 320, "height": 640}, locale="zh-CN")
    page = context.new_page()
    base = live_server.url
    page.goto(f"{base}/p/r/{old}")
    assert "这个链接已失效" in page.locator("main").inner_text()
    _accessible(page, "ended reminder link")
    for width in (320, 195):
        page.set_viewport_size({"width": width, "height": 640})
        _no_sideways_scroll(page, f"ended reminder link at {width}px")
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(f"{base}/p/r/{new}")
    _accessible(page, "reminder link sign-in")
    _no_sideways_scroll(page, "reminder link sign-in")
    page.fill("#pin", seed.main_pin)
    page.locator("main button[type=submit].primary").click()
    # Straight to the form (or, as here once it was sent earlier in this module, to the home page).
    page.wait_for_url(re.compile(rf".*/p/(t/{seed.main_tp}(/.*)?)?$"))
    assert "/p/r/" not in page.url
    context.close()


#: What a patient can tap: links, buttons, fields; a radio or checkbox is tapped through its label.
_TARGETS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')) {
    const target = (el.type === 'radio' || el.type === 'checkbox') ? (el.closest('label') || el) : el;
    const r = target.getBoundingClientRect();
    const style = getComputedStyle(target);
    if (style.visibility === 'hidden' || style.display === 'none' || r.width <= 1 || r.right <= 0) continue;
    out.push({what: target.outerHTML.slice(0, 80), w: r.width, h: r.height});
  }
  return out;
}"""


def _targets_big_enough(page, label: str) -> int:
    small = [t for t in page.evaluate(_TARGETS) if t["w"] < 44 or t["h"] < 44]
    assert small == [], f"{label} ({page.url}): targets under 44 x 44 px: {small}"
    return len(page.evaluate(_TARGETS))


def _switch_to(page, language: str) -> None:
    """The signed-in patient's language (the header's switch toggles between the two)."""
    if page.get_attribute("html", "lang") != language.replace("_", "-"):
        with page.expect_navigation():
            page.locator("header .langs button").first.click()
    assert page.get_attribute("html", "lang") == language.replace("_", "-")


def test_every_target_is_44px_and_axe_passes_in_both_languages(browser, live_server, seed):
    """Every interactive element on every patient page type is at least 44 x 44 CSS px at 320 px,
    in Chinese and in English, and axe still reports no violation."""
    context = browser.new_context(viewport={"width": 320, "height": 640}, locale="zh-CN")
    page = context.new_page()
    base = live_server.url
    checked = 0
    for language in ("zh_Hans", "en"):
        page.goto(f"{base}/p/l/{seed.main_token}")
        checked += _targets_big_enough(page, "link page")
        _sign_in(page, base, seed.layout_token)
        if page.get_attribute("html", "lang") != language.replace("_", "-"):
            with page.expect_navigation():
                page.locator("header .langs button").first.click()
        assert page.get_attribute("html", "lang") == language.replace("_", "-")
        for label, path in seed.urls.items():
            page.goto(base + path)
            checked += _targets_big_enough(page, f"{label} [{language}]")
            _accessible(page, f"{label} [{language}]")
        page.goto(base + seed.urls["home"])
        with page.expect_navigation():
            page.locator("form.signout button").click()
        checked += _targets_big_enough(page, f"signed out [{language}]")
        _accessible(page, f"signed out [{language}]")
        _sign_in(page, base, seed.red_token)
        _switch_to(page, language)
        for label, path in (("emergency", seed.red_done), ("call", seed.red_done.replace("/done", "/call"))):
            page.goto(base + path)
            assert page.get_attribute("html", "lang") == language.replace("_", "-")
            checked += _targets_big_enough(page, f"{label} [{language}]")
            _accessible(page, f"{label} [{language}]")
    # Back to Chinese for the rest of the module.
    for token in (seed.layout_token, seed.red_token):
        _sign_in(page, base, token)
        _switch_to(page, "zh_Hans")
    context.close()
    assert checked > 50
