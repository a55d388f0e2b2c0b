"""Large print on a 320 x 640 phone: a QLQ-C30 answered item by item (one tap each) with a Back
that keeps the answer, with and without JavaScript; text >= 24 px and answer buttons >= 64 px
measured; axe 0 violations (WCAG 2.1 AA and enhanced contrast) in both languages; no sideways
scroll at 200 % zoom. Read-aloud: no button without a voice, the script loads under the CSP, and
with a voice given to the page the button speaks the item and its options in the page language. Uses the live server of ``tests/browser/conftest.py``."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.factories import browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_large_print")]

SMALL = {"width": 320, "height": 640}
ZOOMED = {"width": 160, "height": 320}  # 200 % zoom of the 320 px phone
C30 = "eortc_qlq_c30"
AXE_AA = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
AXE_ENHANCED = {"runOnly": {"type": "rule", "values": ["color-contrast-enhanced"]}, "resultTypes": ["violations"]}
PIN = "975310"


@pytest.fixture(scope="module")
def seed(live_server):
    from qol_app.db import db, utcnow
    from tests.factories import Factory

    with live_server.app.app_context():
        factory = Factory(db.session, utcnow())
        site = factory.site(code="LP1", contact_phone="021-5555-0177", emergency_phone="120")
        out = []
        # visits: with JavaScript, without, for the measurements; read-aloud in large print, then not;
        # the whole visit at 200 % zoom
        for n in range(6):
            enrolled = factory.patient(site, language="zh_Hans", pin=PIN)
            enrolled.patient.display_preferences = {"large_print": True} if n != 4 else None
            tp = factory.timepoint(enrolled, instruments=[C30], respondent="self")
            out.append((enrolled.token, tp.id, enrolled.patient.id))
        db.session.commit()
        return out


def _sign_in(page, base: str, token: str) -> None:
    browser_sign_in(page, base, token, PIN)


def _accessible(page, label: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    for options in (AXE_AA, AXE_ENHANCED):
        results = Axe().run(page, options=options)
        assert results.violations_count == 0, f"{label} ({page.url}):\n{results.generate_report()}"


_SIZES = """() => {
  const px = el => parseFloat(getComputedStyle(el).fontSize);
  const main = document.querySelector('main').getBoundingClientRect();
  const answers = [...document.querySelectorAll('button.answer')].map(b => {
    const r = b.getBoundingClientRect();
    return {h: r.height, w: r.width, font: px(b)};
  });
  return {question: px(document.querySelector('h1')), main: main.width, answers,
          back: document.querySelector('.back a').getBoundingClientRect().height,
          scroll: [document.documentElement.scrollWidth, document.documentElement.clientWidth]};
}"""


def _measure(page, label: str) -> None:
    sizes = page.evaluate(_SIZES)
    assert sizes["question"] >= 24, (label, sizes)
    assert sizes["answers"], label
    for answer in sizes["answers"]:
        assert answer["font"] >= 24 and answer["h"] >= 64, (label, sizes)
        assert answer["w"] >= sizes["main"] - 2 * 16, (label, sizes)  # full width (within main's padding)
    assert sizes["back"] >= 64, (label, sizes)
    assert sizes["scroll"][0] <= sizes["scroll"][1], (label, sizes)


def _stored(live_server, tp_id: int) -> dict[str, float | None]:
    from qol_app.db import db
    from qol_app.models import Answer, Response

    with live_server.app.app_context():
        response = db.session.scalar(select(Response).where(Response.timepoint_id == tp_id))
        if response is None:
            return {}
        rows = db.session.scalars(select(Answer).where(Answer.response_id == response.id))
        return {a.item_id: a.value for a in rows}


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_a_large_print_qlq_c30_item_by_item_with_one_back(browser, live_server, seed, javascript):
    token, tp_id, _ = seed[0 if javascript else 1]
    base = live_server.url
    context = browser.new_context(viewport=SMALL, locale="zh-CN", java_script_enabled=javascript)
    page = context.new_page()
    _sign_in(page, base, token)
    page.goto(f"{base}/p/t/{tp_id}")
    assert page.get_attribute("html", "lang") == "zh-Hans"
    assert re.search(rf"/{C30}/1$", page.url)
    _measure(page, "first item")
    taps = 0
    while "/submit" not in page.url:
        assert page.locator("button.answer").count() >= 2  # one item per screen, its answers as buttons
        assert page.locator("#survey fieldset, #survey input[type=radio]").count() == 0
        with page.expect_navigation():
            page.locator("button.answer").nth(1).click()  # one tap
        taps += 1
        if taps == 5:  # first item of page 2: Back goes to the last item of page 1, its answer kept
            with page.expect_navigation():
                page.locator(".back a").click()
            assert re.search(rf"/{C30}/1\?item=last$", page.url)
            assert page.locator("button.answer[aria-pressed=true]").count() == 1
            assert page.locator("button.answer").nth(1).get_attribute("aria-pressed") == "true"
            with page.expect_navigation():
                page.locator("#survey button[value=next]").click()  # Next past it keeps it
            assert re.search(rf"/{C30}/2$", page.url)
    assert taps == 30
    assert page.url.endswith(f"/p/t/{tp_id}/submit")
    stored = _stored(live_server, tp_id)
    assert len(stored) == 30 and None not in stored.values()
    with page.expect_navigation():
        page.locator("main button[type=submit].primary").click()  # the same one Send
    assert page.url.endswith(f"/p/t/{tp_id}/done")
    context.close()


def test_large_print_sizes_contrast_and_axe_in_both_languages(browser, live_server, seed):
    token, tp_id, _ = seed[2]
    base = live_server.url
    context = browser.new_context(viewport=SMALL, locale="zh-CN")
    page = context.new_page()
    _sign_in(page, base, token)
    for language in ("zh_Hans", "en"):
        if page.get_attribute("html", "lang") != language.replace("_", "-"):
            with page.expect_navigation():
                page.locator("header .langs button").first.click()
        assert page.get_attribute("html", "lang") == language.replace("_", "-")
        for path in (f"/p/t/{tp_id}/{C30}/1", f"/p/t/{tp_id}/{C30}/1?item=3", f"/p/t/{tp_id}/{C30}/7?item=last"):
            page.goto(base + path)
            _measure(page, f"{path} [{language}]")
            _accessible(page, f"{path} [{language}]")
            if language == "zh_Hans" and path.endswith("item=3"):  # a two-line question: its four answers on one screen
                bottom = page.evaluate("document.querySelector('.answers').getBoundingClientRect().bottom")
                assert bottom <= SMALL["height"], bottom
        page.goto(f"{base}/p/")
        _accessible(page, f"home [{language}]")
    page.set_viewport_size(ZOOMED)
    page.goto(f"{base}/p/t/{tp_id}/{C30}/1?item=2")
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], width
    context.close()


_WIDTHS = """() => {
  const doc = document.documentElement;
  const wide = [...document.querySelectorAll('main *')].filter(el => el.getBoundingClientRect().right > doc.clientWidth + 0.5);
  return {scroll: doc.scrollWidth, client: doc.clientWidth, wide: wide.slice(0, 3).map(el => el.outerHTML.slice(0, 80))};
}"""


def test_a_whole_large_print_visit_at_200_percent_zoom_never_scrolls_sideways(browser, live_server, seed):
    """The full QLQ-C30 at 200 % zoom of the 320 px phone (a 160 x 320 CSS-pixel viewport): no
    screen, from the first item to the review, is wider than the viewport."""
    token, tp_id, _ = seed[5]
    base = live_server.url
    context = browser.new_context(viewport=SMALL, locale="zh-CN")
    page = context.new_page()
    _sign_in(page, base, token)
    page.set_viewport_size(ZOOMED)
    page.goto(f"{base}/p/t/{tp_id}")
    screens = 0
    while "/submit" not in page.url:
        widths = page.evaluate(_WIDTHS)
        assert widths["scroll"] <= widths["client"], (page.url, widths)
        assert page.locator("button.answer").count() >= 2
        with page.expect_navigation():
            page.locator("button.answer").first.click()
        screens += 1
    assert screens == 30
    widths = page.evaluate(_WIDTHS)
    assert widths["scroll"] <= widths["client"], (page.url, widths)
    assert len(_stored(live_server, tp_id)) == 30
    context.close()


#: Records Content-Security-Policy violations, before any page script runs.
_CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""

#: A speech-synthesis voice for the page (Debian's headless Chromium has none): speak() is recorded.
_FAKE_VOICE = """
window.__spoken = [];
const voices = [{lang: 'en-US', name: 'Fake English'}, {lang: 'zh-CN', name: 'Fake Mandarin'}];
Object.defineProperty(window, 'speechSynthesis', {configurable: true, value: {
  getVoices: () => voices, cancel: () => {}, addEventListener: () => {},
  speak: u => window.__spoken.push({text: u.text, lang: u.lang}),
}});
window.SpeechSynthesisUtterance = function (text) { this.text = text; };
"""


def _open(browser, live_server, token, path, *scripts):
    context = browser.new_context(viewport=SMALL, locale="zh-CN")
    for script in scripts:
        context.add_init_script(script)
    page = context.new_page()
    _sign_in(page, live_server.url, token)
    page.goto(live_server.url + path)
    page.wait_for_load_state("load")
    return context, page


@pytest.mark.parametrize("large", [True, False], ids=["large-print", "default"])
def test_without_a_voice_no_listen_button_and_the_script_loads_under_the_csp(browser, live_server, seed, large):
    token, tp_id, _ = seed[3 if large else 4]
    context, page = _open(browser, live_server, token, f"/p/t/{tp_id}/{C30}/1", _CSP_WATCH)
    assert page.get_attribute("html", "data-listen-script") == "loaded"
    assert page.evaluate("window.__csp") == []
    assert page.locator("button.listen").count() == 0
    context.close()


@pytest.mark.parametrize("large", [True, False], ids=["large-print", "default"])
def test_with_a_voice_the_listen_button_speaks_the_item_and_its_options(browser, live_server, seed, large):
    from qol_app.db import db
    from qol_app.services import responses as svc

    token, tp_id, _ = seed[3 if large else 4]
    with live_server.app.app_context():
        texts = svc.localized(db.session, svc.registry().get(C30), "zh_Hans")
        item = texts.item("q1")
        instructions = texts.instructions
        expected = "\n".join([item.text, *[o.label for o in item.options]])
    context, page = _open(browser, live_server, token, f"/p/t/{tp_id}/{C30}/1", _CSP_WATCH, _FAKE_VOICE)
    assert page.evaluate("window.__csp") == []
    buttons = page.locator("button.listen")
    assert buttons.count() == (2 if large else 6)  # instructions and the item (each item of the page)
    assert buttons.first.inner_text() == "朗读"
    buttons.nth(1).click()
    buttons.first.click()
    spoken = page.evaluate("window.__spoken")
    assert spoken == [{"text": expected, "lang": "zh-CN"}, {"text": instructions.strip(), "lang": "zh-CN"}]
    if large:
        _accessible(page, "item page with listen buttons")
    context.close()
