"""Headless Chromium against a real server thread over a committed, migrated SQLite database.

Never downloads a browser: Debian's chromium is used when present. Without it the browser
tests are skipped with a visible reason, unless QOL_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE_BROWSER = os.environ.get("QOL_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    path = _chromium()
    if path is None:
        if REQUIRE_BROWSER:
            pytest.fail("QOL_REQUIRE_BROWSER=1 but no chromium executable is installed")
        pytest.skip("chromium is not installed: browser tests skipped (set QOL_REQUIRE_BROWSER=1 to fail)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class LiveServer:
    def __init__(self, app, url: str) -> None:
        self.app = app
        self.url = url


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory):
    """The real app over a migrated SQLite file (committing, no frozen clock)."""
    from alembic import command

    from qol_app import create_app
    from qol_app.migrations import alembic_config

    path: Path = tmp_path_factory.mktemp("browser") / "qol.sqlite"
    url = f"sqlite:///{path}"
    command.upgrade(alembic_config(url), "head")
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "browser-tests",
            "SESSION_COOKIE_SECURE": False,
            "PUBLIC_BASE_URL": "http://127.0.0.1",
        }
    )
    yield app
    app.extensions["qol_db"]["engine"].dispose()


@pytest.fixture(scope="module")
def live_server(live_app) -> Iterator[LiveServer]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield LiveServer(live_app, f"http://127.0.0.1:{server.server_port}")
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()
