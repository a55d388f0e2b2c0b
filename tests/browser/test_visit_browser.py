"""A whole baseline visit (QLQ-C30 + QLQ-BN20 + EQ-5D-5L) in Chinese on a 320 x 640 phone: who is
answering once, every page in sequence, one review, one Send, three stored responses; a second Send
says it was already sent. Switching language and signing out mid-page keep the ticks; the PIN lets
the patient back in on the same device. Uses the live server of ``tests/browser/conftest.py``."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

pytestmark = pytest.mark.browser

SMALL = {"width": 320, "height": 640}
FORMS = ["eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l"]


@pytest.fixture(scope="module")
def visit_seed(live_server):
    from qol_app.db import db, utcnow
    from tests.factories import Factory

    with live_server.app.app_context():
        factory = Factory(db.session, utcnow())
        site = factory.site(code="VI1", contact_phone="021-5555-0111", emergency_phone="120")
        enrolled = factory.patient(site, language="zh_Hans", pin="135790")
        tp = factory.timepoint(enrolled, instruments=FORMS)
        db.session.commit()
        return enrolled.token, tp.id


def _answer_page(page) -> None:
    names = page.evaluate("[...new Set([...document.querySelectorAll('#survey input[type=radio]')].map(e => e.name))]")
    for name in names:
        options = page.locator(f"#survey input[type=radio][name='{name}']")
        options.nth(min(1, options.count() - 1)).check()
    typed = page.locator("#survey input:not([type=hidden]):not([type=radio])")
    for i in range(typed.count()):
        typed.nth(i).fill("70")


def test_a_whole_baseline_visit_is_one_send(browser, live_server, visit_seed):
    from qol_app.db import db
    from qol_app.models import Response

    token, tp_id = visit_seed
    base = live_server.url
    context = browser.new_context(viewport=SMALL, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{base}/p/l/{token}")
    page.fill("#pin", "135790")
    page.locator("main button[type=submit].primary").click()
    page.wait_for_url(f"{base}/p/")
    page.locator(f"main a.button[href='/p/t/{tp_id}']").click()
    page.wait_for_url(re.compile(r".*/respondent$"))
    assert not page.locator("fieldset.rel").is_visible()  # the relationship only for a caregiver
    page.check("input[name=respondent][value=proxy]")
    assert page.locator("fieldset.rel").is_visible()
    page.check("input[name=respondent][value=self]")
    page.locator("main button[type=submit].primary").click()
    page.wait_for_url(re.compile(r".*/eortc_qlq_c30/1$"))

    # Mid-page: tick, switch language, the tick is still there (and saved); then sign out and back in.
    page.locator("#survey input[name=q1]").nth(1).check()
    with page.expect_navigation():
        page.locator("header .langs button").click()
    assert page.get_attribute("html", "lang") == "en"
    assert page.locator("#survey input[name=q1]").nth(1).is_checked()
    page.locator("#survey input[name=q2]").nth(2).check()
    with page.expect_navigation():
        page.locator("button[value=signout]").click()
    assert "/p/signed-out" in page.url and "saved" in page.locator("main").inner_text()
    page.fill("#pin", "135790")
    with page.expect_navigation():
        page.locator("main button[type=submit].primary").click()
    page.goto(f"{base}/p/t/{tp_id}")
    assert page.locator("#survey input[name=q2]").nth(2).is_checked()
    with page.expect_navigation():
        page.locator("header .langs button").click()  # back to Chinese
    assert page.get_attribute("html", "lang") == "zh-Hans"

    totals = set()
    for _ in range(40):
        if page.url.endswith(f"/p/t/{tp_id}/submit"):
            break
        totals.add(re.search(r"共\s*(\d+)\s*页", page.locator(".progress").inner_text()).group(1))
        _answer_page(page)
        with page.expect_navigation():
            page.locator("button[name=nav][value=next]").click()
    assert page.url.endswith(f"/p/t/{tp_id}/submit") and len(totals) == 1  # one "page N of M" for the visit
    other = context.new_page()  # a second tab on the same review
    other.goto(page.url)
    with page.expect_navigation():
        page.locator("main form.nav button.primary").click()
    assert page.url.endswith(f"/p/t/{tp_id}/done")
    with live_server.app.app_context():
        rows = db.session.scalars(select(Response).where(Response.timepoint_id == tp_id)).all()
        assert sorted((r.instrument_id, r.status) for r in rows) == sorted((f, "submitted") for f in FORMS)
    # The other tab's Send: already sent, nothing more stored.
    with other.expect_navigation():
        other.locator("main form.nav button.primary").click()
    from flask_babel import force_locale, gettext

    with live_server.app.test_request_context():
        with force_locale("zh_Hans"):
            already = gettext("These answers were already sent")
    assert already in other.locator("h1").inner_text()
    with live_server.app.app_context():
        assert len(db.session.scalars(select(Response).where(Response.timepoint_id == tp_id)).all()) == 3
    context.close()

    # Another device: no way back in with the PIN alone.
    stranger = browser.new_context(viewport=SMALL, locale="zh-CN").new_page()
    stranger.goto(f"{base}/p/signed-out")
    assert stranger.locator("input[name=pin]").count() == 0
    stranger.context.close()
