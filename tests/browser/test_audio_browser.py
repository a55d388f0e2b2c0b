"""A site's recorded audio on a 320 x 640 phone (zh_Hans): an overlay with a small WAV per text is
imported, each item shows a plain ``<audio>`` control that fetches nothing until played and then
loads, with and without JavaScript, in the default and the large-print layout; with JavaScript the
saved response records that a recording (or the listen button) was played."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories import browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_audio")]

SMALL = {"width": 320, "height": 640}
C30 = "eortc_qlq_c30"
PIN = "864208"

#: A speech-synthesis voice for the page (Debian's headless Chromium has none): speak() is recorded.
_FAKE_VOICE = """
window.__spoken = [];
const voices = [{lang: 'zh-CN', name: 'Fake Mandarin'}];
Object.defineProperty(window, 'speechSynthesis', {configurable: true, value: {
  getVoices: () => voices, cancel: () => {}, addEventListener: () => {},
  speak: u => window.__spoken.push({text: u.text, lang: u.lang}),
}});
window.SpeechSynthesisUtterance = function (text) { this.text = text; };
"""


@pytest.fixture(scope="module")
def seed(live_server, tmp_path_factory):
    from qol_app.db import db, utcnow
    from qol_app.services import responses as svc
    from qol_app.services.audit import Actor
    from qol_app.services.wording import import_overlay
    from tests.audio_overlay import write_overlay
    from tests.factories import Factory

    with live_server.app.app_context():
        import_overlay(
            db.session,
            Actor("system", "tests"),
            write_overlay(tmp_path_factory.mktemp("overlay")),
            now=utcnow(),
            registry=svc.registry(),
        )
        factory = Factory(db.session, utcnow())
        site = factory.site(code="AU1", contact_phone="021-5555-0188", emergency_phone="120")
        out = []
        # default js, default no-js, large print js, large print no-js, listen, axe default, axe large print
        for n in range(7):
            enrolled = factory.patient(site, language="zh_Hans", pin=PIN)
            enrolled.patient.display_preferences = {"large_print": True} if n in (2, 3, 4, 6) else None
            tp = factory.timepoint(enrolled, instruments=[C30], respondent="self")
            out.append((enrolled.token, tp.id))
        db.session.commit()
        return out


def _sign_in(page, base: str, token: str) -> None:
    browser_sign_in(page, base, token, PIN)


def _presentation(live_server, tp_id: int):
    from qol_app.db import db
    from qol_app.models import Response

    with live_server.app.app_context():
        response = db.session.scalar(select(Response).where(Response.timepoint_id == tp_id))
        return None if response is None else (response.display_mode, response.read_aloud_used, response.audio_used)


def _play(page, clip):
    """Press the control's own play button (at its left end) and wait for the recording's bytes."""
    box = clip.bounding_box()
    with page.expect_response(lambda r: "/p/audio/" in r.url) as answer:
        clip.click(position={"x": 20, "y": box["height"] / 2})
    return answer.value


@pytest.mark.parametrize(
    ("large", "javascript"),
    [(False, True), (False, False), (True, True), (True, False)],
    ids=["default-js", "default-no-js", "large-print-js", "large-print-no-js"],
)
def test_recordings_play_from_a_plain_audio_control_and_the_response_says_so(
    browser, live_server, seed, large, javascript
):
    token, tp_id = seed[{(False, True): 0, (False, False): 1, (True, True): 2, (True, False): 3}[(large, javascript)]]
    context = browser.new_context(viewport=SMALL, locale="zh-CN", java_script_enabled=javascript)
    page = context.new_page()
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/p/audio/" in r.url else None)
    _sign_in(page, live_server.url, token)
    page.goto(f"{live_server.url}/p/t/{tp_id}/{C30}/1" + ("?item=2" if large else ""))
    clips = page.locator("main audio[controls][preload=none]")
    assert clips.count() == (5 if large else 1 + 5 + 5 * 4)  # (large print: item 2 and its 4 answers)
    assert fetched == []  # nothing fetched before the patient presses play
    item_clip = page.locator("#q-q2 ~ audio" if large else "#item-q1 > audio").first
    response = _play(page, item_clip)
    assert response.status in (200, 206) and response.header_value("content-type") == "audio/wav"
    assert len(set(fetched)) == 1
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], width
    if javascript:
        page.wait_for_function("el => el.readyState >= 2", arg=item_clip.element_handle())  # HAVE_CURRENT_DATA
        assert page.locator("#survey input[name=aid_audio]").input_value() == "1"
    with page.expect_navigation():
        if large:
            page.locator("button.answer").nth(1).click()
        else:
            for n in range(1, 6):
                page.locator(f"#item-q{n} label.opt").nth(0).click()
            page.locator("#survey button[value=next]").click()
    mode = "large_print" if large else "default"
    assert _presentation(live_server, tp_id) == (mode, False, javascript)  # known only with JavaScript
    context.close()


def test_the_listen_button_is_recorded_on_the_response(browser, live_server, seed):
    token, tp_id = seed[4]
    context = browser.new_context(viewport=SMALL, locale="zh-CN")
    context.add_init_script(_FAKE_VOICE)
    page = context.new_page()
    _sign_in(page, live_server.url, token)
    page.goto(f"{live_server.url}/p/t/{tp_id}/{C30}/1?item=1")
    page.wait_for_load_state("load")
    page.locator("button.listen").nth(1).click()  # the item (the first one reads the instructions)
    assert page.evaluate("window.__spoken.length") == 1
    assert page.locator("#survey input[name=aid_listen]").input_value() == "1"
    assert page.locator("#survey input[name=aid_audio]").input_value() == ""
    with page.expect_navigation():
        page.locator("button.answer").first.click()
    assert _presentation(live_server, tp_id) == ("large_print", True, False)
    # the next item starts afresh: answered without listening, the form keeps "read aloud used"
    assert page.locator("#survey input[name=aid_listen]").input_value() == ""
    with page.expect_navigation():
        page.locator("button.answer").first.click()
    assert _presentation(live_server, tp_id) == ("large_print", True, False)
    context.close()


AXE = (
    {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}, "resultTypes": ["violations"]},
    {"runOnly": {"type": "rule", "values": ["color-contrast-enhanced"]}, "resultTypes": ["violations"]},
)


@pytest.mark.parametrize("large", [False, True], ids=["default", "large-print"])
def test_pages_with_recordings_pass_axe(browser, live_server, seed, large):
    """WCAG 2.1 AA; large print also the enhanced contrast it promises (1.4.6)."""
    from axe_playwright_python.sync_playwright import Axe

    token, tp_id = seed[6 if large else 5]
    context = browser.new_context(viewport=SMALL, locale="zh-CN")
    page = context.new_page()
    _sign_in(page, live_server.url, token)
    for path in (f"/p/t/{tp_id}/{C30}/1", f"/p/t/{tp_id}/{C30}/7" + ("?item=last" if large else "")):
        page.goto(live_server.url + path)
        assert page.locator("main audio").count() >= 5
        for options in AXE if large else AXE[:1]:
            results = Axe().run(page, options=options)
            assert results.violations_count == 0, f"{path}:\n{results.generate_report()}"
    context.close()
