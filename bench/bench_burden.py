"""Patient burden of one full baseline visit (QLQ-C30 + QLQ-BN20 + EQ-5D-5L) on a 320 x 640 phone.

Run:  .venv/bin/python bench/bench_burden.py [--source DIR] [--lang zh_Hans] [--large-print]
Chromium (Debian's) walks the visit as a patient would, from the personal link to the last
thank-you: who is answering, every question page, each review, each Send, each thank-you.
Reported: page loads, taps (a tick, a typed number or a button press each), screen heights
scrolled (per page, how far below the first screen its content reaches, in 640 px screens: the
scrolling needed to reach its last button), and how many reviews, Sends and thank-you pages.
``--source`` points at another checkout of the app (e.g. an export of an older commit) to measure
it the same way ("before" and "after"). Target: one review and one Send per visit, and at most
half the screen heights of the per-form flow.
``--large-print`` walks the same visit in large print (one item per screen, one tap per answer
button) and also reports the weight of one large-print item page with its CSS and scripts,
gzipped (target: at most 20 KB), and on how many item screens the last answer button, and the
Back/Next row, end within the first 640 px screen (no scrolling needed to answer).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

SMALL = {"width": 320, "height": 640}
FORMS = ["eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l"]


def _server(app):
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _seed(app, lang: str, large_print: bool = False) -> tuple[str, int]:
    import datetime as dt

    from qol_app.db import db, utcnow
    from tests.factories import Factory

    with app.app_context():
        now = utcnow()
        factory = Factory(db.session, now - dt.timedelta(seconds=1))
        site = factory.site(contact_phone="021-5555-0100", emergency_phone="120")
        enrolled = factory.patient(site, language=lang, pin=None)
        if large_print:
            enrolled.patient.display_preferences = {"large_print": True}
        tp = factory.timepoint(enrolled, instruments=FORMS)
        db.session.commit()
        return enrolled.token, tp.id


def walk(base: str, token: str, tp_id: int, lang: str) -> dict[str, float]:  # noqa: C901
    from playwright.sync_api import sync_playwright

    counts = {"page loads": 0, "taps": 0, "screen heights": 0.0, "reviews": 0, "sends": 0, "thank-yous": 0}
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        page = browser.new_context(viewport=SMALL, locale="zh-CN" if lang == "zh_Hans" else "en").new_page()

        def loaded() -> None:
            counts["page loads"] += 1
            height = page.evaluate("document.documentElement.scrollHeight")
            counts["screen heights"] += max(0, height - SMALL["height"]) / SMALL["height"]
            if os.environ.get("BENCH_VERBOSE"):
                print(f"{page.url} {height}")
                page.screenshot(path=f"/tmp/bench-burden-{counts['page loads']:02d}.png", full_page=True)

        def tap(selector: str, navigate: bool = True) -> None:
            counts["taps"] += 1
            if navigate:
                with page.expect_navigation():
                    page.locator(selector).first.click()
                loaded()
            else:
                page.locator(selector).first.click()

        page.goto(f"{base}/p/l/{token}")
        loaded()
        tap("main button.primary")  # sign in
        tap(f"main a.button[href='/p/t/{tp_id}']")  # start the visit
        for _ in range(200):
            url = page.url
            if url.endswith("/respondent"):
                page.check("input[name=respondent][value=self]")
                counts["taps"] += 1
                tap("main button.primary")
            elif re.search(r"/submit$", url):
                counts["reviews"] += 1
                counts["sends"] += 1
                tap("main form.nav button.primary")
            elif url.endswith("/done"):
                counts["thank-yous"] += 1
                more = page.locator(f"main a.button.primary[href='/p/t/{tp_id}']")
                if more.count() == 0:
                    break
                tap(f"main a.button.primary[href='/p/t/{tp_id}']")
            elif page.locator("#survey button.answer").count():  # large print: one tap on an answer
                if "weight" not in counts:
                    counts["weight"] = _weight(page)
                answers, nav = page.evaluate(
                    "['#survey .answers', '#survey .nav'].map(s => document.querySelector(s).getBoundingClientRect().bottom)"
                )
                fit = counts.setdefault("item screens", [0, 0, 0])
                fit[0] += 1
                fit[1] += answers <= SMALL["height"]
                fit[2] += nav <= SMALL["height"]
                tap("#survey button.answer >> nth=1")
            elif re.search(r"/\d+(\?.*)?$", url):
                names = page.evaluate(
                    "[...new Set([...document.querySelectorAll('#survey input[type=radio], main form input[type=radio]')]"
                    ".map(e => e.name))]"
                )
                for name in names:
                    options = page.locator(f"input[type=radio][name='{name}']")
                    options.nth(min(1, options.count() - 1)).check()
                    counts["taps"] += 1
                typed = page.locator("main form input:not([type=hidden]):not([type=radio])")
                for i in range(typed.count()):
                    typed.nth(i).fill("70")
                    counts["taps"] += 1
                tap("button[name=nav][value=next]")
            else:
                raise AssertionError(f"unexpected page {url}")
        browser.close()
    return counts


def _weight(page) -> float:
    """KB, gzipped: the page's HTML plus each stylesheet and script it loads."""
    import gzip

    urls = page.evaluate(
        "[location.href, ...[...document.querySelectorAll('link[rel=stylesheet], script[src]')]"
        ".map(e => e.href || e.src)]"
    )
    total = 0
    for url in urls:
        body = page.context.request.get(url).body()
        total += len(gzip.compress(body, 9))
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--lang", default="zh_Hans")
    parser.add_argument("--large-print", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(args.source.resolve()))
    from alembic import command

    from qol_app import create_app
    from qol_app.migrations import alembic_config

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/qol.sqlite"
        command.upgrade(alembic_config(url), "head")
        app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "SESSION_COOKIE_SECURE": False})
        server = _server(app)
        try:
            token, tp_id = _seed(app, args.lang, args.large_print)
            counts = walk(f"http://127.0.0.1:{server.server_port}", token, tp_id, args.lang)
        finally:
            server.shutdown()
    mode = "large print" if args.large_print else "default"
    print(f"baseline visit, {args.lang}, 320 x 640, {mode}, source {args.source}")
    if "weight" in counts:
        counts["weight"] = f"{counts['weight']:.1f} KB gzip (item page + CSS + scripts)"
    if "item screens" in counts:
        total, answers, nav = counts["item screens"]
        counts["item screens"] = f"{total}: answers within the first screen on {answers}, Back/Next too on {nav}"
    for name, value in counts.items():
        print(f"  {name:15} {value:.1f}" if isinstance(value, float) else f"  {name:15} {value}")


if __name__ == "__main__":
    main()
