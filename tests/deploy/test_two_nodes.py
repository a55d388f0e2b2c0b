"""Two nodes, one truth: two gunicorn nodes as separate processes on different ports against one
PostgreSQL database. Whatever one node decides (a session, a sign-out, a PIN failure, a CSRF token,
the scheduler lock) holds on the other, because it lives in the database or in the shared secret key,
never in a process.

Staff sign-in throttling is issue #16 and not in this branch; the staff tests here cover what exists
(a staff session and its end on disabling, across nodes).
"""

from __future__ import annotations

import signal
import time

import pytest

from deploy.stack import BIN, NURSE, Browser, Stack, forms, hidden, main_form

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("two_nodes")]  # one stack, one worker


@pytest.fixture(scope="module")
def stack(needs_postgres, tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("two-nodes"), nodes=2, workers=1, scheduler=False, nginx=False) as running:
        running.data = running.seed(6)
        yield running


@pytest.fixture(scope="module")
def patients(stack):
    return iter(stack.data["patients"])


def pair(stack: Stack) -> tuple[Browser, Browser]:
    """One browser, two nodes: the same cookie jar talks to node 1 and to node 2."""
    first, second = stack.node_client(0), stack.node_client(1)
    second.cookies = first.cookies
    return first, second


def link_form(browser: Browser, token: str, pin: str) -> dict:
    page = browser.get(f"/p/l/{token}")
    assert page.status == 200, page.status
    return hidden(main_form(page.body)) | {"pin": pin}


def test_a_session_begun_on_one_node_is_valid_on_the_other(stack, patients):
    one, two = pair(stack)
    token = next(patients)
    assert one.post(f"/p/l/{token}", link_form(one, token, stack.data["pin"])).status == 302
    home = two.get("/p/")
    assert home.status == 200 and "/p/t/" in home.body


def test_signing_out_on_one_node_ends_the_session_on_the_other(stack, patients):
    one, two = pair(stack)
    token = next(patients)
    one.post(f"/p/l/{token}", link_form(one, token, stack.data["pin"]))
    stolen = dict(one.cookies)  # e.g. a copy of the cookie kept on another device
    home = two.get("/p/")
    logout = next(inner for action, inner in forms(home.body) if action == "/p/logout")
    assert two.post("/p/logout", hidden(logout)).status == 302
    replay = stack.node_client(0)
    replay.cookies = stolen
    again = replay.get("/p/")
    assert again.status == 302 and "/p/signed-out" in again.location


def test_pin_failures_on_both_nodes_add_up_to_one_lock_out(stack, patients):
    token = next(patients)
    one, two = pair(stack)
    statuses = []
    for attempt in range(5):  # PIN_MAX_FAILURES (5), alternating nodes
        browser = (one, two)[attempt % 2]
        statuses.append(browser.post(f"/p/l/{token}", link_form(browser, token, "000000")).status)
    assert statuses == [200, 200, 200, 200, 429], statuses
    # Locked on both nodes, even with the right PIN.
    for browser in (one, two):
        assert browser.post(f"/p/l/{token}", link_form(browser, token, stack.data["pin"])).status == 429


def test_a_csrf_token_from_one_node_works_on_the_other_and_a_forged_one_nowhere(stack, patients):
    token = next(patients)
    one, two = pair(stack)
    form = link_form(one, token, stack.data["pin"])
    assert two.post(f"/p/l/{token}", form).status == 302
    forger = stack.node_client(1)
    forger.get(f"/p/l/{token}")
    forged = forger.post(f"/p/l/{token}", {"csrf_token": form["csrf_token"][:-4] + "abcd", "pin": stack.data["pin"]})
    assert forged.status == 400
    stranger = stack.node_client(0)  # a token issued to another browser's session
    stranger.get(f"/p/l/{token}")
    assert stranger.post(f"/p/l/{token}", form).status == 400


def test_staff_session_and_disabling_hold_across_nodes(stack):
    one, two = pair(stack)
    page = one.get("/staff/login")
    signed = one.post("/staff/login", hidden(main_form(page.body)) | {"username": NURSE[0], "password": NURSE[1]})
    assert signed.status == 302
    assert two.get("/staff/").status == 200
    stack.qol("users", "disable", NURSE[0], "--reason", "left the hospital")
    try:
        assert one.get("/staff/").status == 302 and two.get("/staff/").status == 302
        page = two.get("/staff/login")
        refused = two.post("/staff/login", hidden(main_form(page.body)) | {"username": NURSE[0], "password": NURSE[1]})
        assert refused.status == 200 and "disabled" in refused.body
    finally:
        stack.qol("users", "enable", NURSE[0], "--reason", "back")


def test_one_scheduler_across_processes(stack):
    """The first scheduler holds the PostgreSQL advisory lock; another process exits 75, one with
    --wait takes over when the first stops."""
    first = stack._spawn("scheduler-first", [BIN / "qol", "scheduler", "--interval", "3600"])
    try:
        deadline = time.monotonic() + 90
        while "scheduler started" not in stack.log("scheduler-first") and time.monotonic() < deadline:
            assert first.poll() is None, stack.log("scheduler-first")
            time.sleep(0.2)
        assert "scheduler started" in stack.log("scheduler-first"), stack.log("scheduler-first")
        second = stack.qol("scheduler", "--once", check=False)
        assert second.returncode == 75 and "another scheduler is running" in second.stderr, second
        waiting = stack._spawn("scheduler-waiting", [BIN / "qol", "scheduler", "--wait", "--interval", "3600"])
        time.sleep(1)
        assert "scheduler started" not in stack.log("scheduler-waiting")
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
        deadline = time.monotonic() + 90  # --wait polls every 5 s; a loaded machine starts it slowly
        while "scheduler started" not in stack.log("scheduler-waiting") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "scheduler started" in stack.log("scheduler-waiting"), stack.log("scheduler-waiting")
        waiting.send_signal(signal.SIGTERM)
        waiting.wait(timeout=30)
    finally:
        for name in ("scheduler-first", "scheduler-waiting"):
            proc = stack.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    status = stack.qol("scheduler", "status", check=False)
    assert status.returncode == 0, status.stdout
