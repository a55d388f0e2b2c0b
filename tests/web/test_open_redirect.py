"""Redirects stay on the site: an open-redirect corpus against every route that takes ``next``.

A redirect is judged the way a browser follows it: leading spaces and control characters
dropped, tabs and newlines removed, backslashes read as slashes, then resolved against the page.
"""

from __future__ import annotations

from urllib.parse import quote, urljoin, urlsplit

import pytest

from qol_app.redirects import is_local_path, safe_next
from tests.factories import hidden_fields, isolated_client, login, no_csrf, sign_in

CORPUS = [
    "//evil.example/phish",
    "///evil.example",
    "/\t/evil.example/phish",
    "/\t\t/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    "/%5Cevil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "%2F%2Fevil.example",
    "/%252F%252Fevil.example",
    "/\r\n/evil.example",
    "/\r\nSet-Cookie: x=1",
    "/%0d%0a/x",
    "/\x00/evil.example",
    "\x00//evil.example",
    "https://evil.example/",
    "HTTPS://evil.example",
    "http:evil.example",
    "http:/evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//evil.example@localhost",
    "http://localhost@evil.example/",
    "／／evil.example",
    "/／evil.example",
    "evil.example",
    "/" + "a" * 5000,
]


def browser_target(location: str, page: str) -> tuple[str, str]:
    """(host, path) a browser would open for ``Location: location`` on ``page``."""
    cleaned = location.strip("".join(chr(c) for c in range(0x21)))
    cleaned = cleaned.replace("\t", "").replace("\r", "").replace("\n", "").replace("\\", "/")
    parts = urlsplit(urljoin(page, cleaned))
    return parts.hostname or "", parts.path


def assert_stays(response, page: str = "http://localhost/") -> None:
    assert response.status_code < 500, response.status_code
    location = response.headers.get("Location")
    if location is None:
        return
    host, _path = browser_target(location, page)
    assert host == "localhost", f"redirected off the site: {location!r}"


@pytest.mark.parametrize("target", CORPUS)
def test_the_helper_refuses_the_corpus(target):
    assert not is_local_path(target)
    assert safe_next(target, "/default") == "/default"


@pytest.mark.parametrize(
    "target", ["/staff/", "/staff/patients?q=S01&page=2", "/p/t/3/eq5d5l/1", "/stats/", "/p/?a=%2F"]
)
def test_the_helper_keeps_site_paths(target):
    assert safe_next(target, "/default") == target


def test_within_limits_the_area():
    assert safe_next("/staff/", "/p/", within="/p/") == "/p/"
    assert safe_next("/p/t/1/x/1", "/p/", within="/p/") == "/p/t/1/x/1"


def test_staff_sign_in_never_leaves_the_site(app, factory):
    no_csrf(app)
    nurse = factory.staff("nurse", sites=[factory.site()])
    client = isolated_client(app)
    for target in CORPUS:
        response = client.post(
            "/staff/login?next=" + quote(target, safe=""), data={"username": nurse.username, "password": "x" * 0}
        )
        assert_stays(response)  # a failed sign-in: the page again
        from tests.factories import STAFF_PASSWORD

        response = client.post(
            "/staff/login?next=" + quote(target, safe=""), data={"username": nurse.username, "password": STAFF_PASSWORD}
        )
        assert response.status_code == 302, target
        assert_stays(response)
        assert response.headers["Location"].endswith("/staff/"), (target, response.headers["Location"])
    ok = client.post("/staff/login?next=/staff/patients", data={"username": nurse.username, "password": STAFF_PASSWORD})
    assert ok.headers["Location"].endswith("/staff/patients")


def test_staff_language_switch_never_leaves_the_site(app, factory):
    no_csrf(app)
    client = isolated_client(app)
    for signed_in in (False, True):
        if signed_in:
            login(client, factory.staff("nurse", sites=[factory.site()]))
        for target in CORPUS:
            response = client.post("/staff/language", data={"language": "en", "next": target})
            assert response.status_code == 302, target
            assert_stays(response)


def test_patient_language_switch_never_leaves_the_site(app, factory):
    enrolled = factory.patient(pin=None)
    client = isolated_client(app)
    for signed_in in (False, True):
        if signed_in:
            assert sign_in(client, enrolled.token, pin=None).status_code == 302
        page = client.get("/p/" if signed_in else f"/p/l/{enrolled.token}").get_data(as_text=True)
        token = hidden_fields(page)["csrf_token"]
        for target in CORPUS:
            response = client.post("/p/language", data={"csrf_token": token, "lang": "en", "next": target})
            assert response.status_code == 302, target
            assert_stays(response)
            # The same with an expired page (the CSRF check fails first): still on the site.
            expired = client.post("/p/language", data={"csrf_token": "stale", "lang": "en", "next": target})
            assert_stays(expired)
    kept = client.post("/p/language", data={"csrf_token": token, "lang": "zh_Hans", "next": "/p/?x=1"})
    assert kept.headers["Location"].endswith("/p/?x=1")


def test_no_route_follows_a_next_it_was_not_built_for(app, factory):
    """Every route in url_map, asked with a hostile ``next`` in the query and the form, stays on the site."""
    no_csrf(app)
    site = factory.site()
    nurse = factory.staff("nurse", sites=[site])
    enrolled = factory.patient(site, pin=None)
    clients = {"anonymous": isolated_client(app), "staff": isolated_client(app), "patient": isolated_client(app)}
    login(clients["staff"], nurse)
    sign_in(clients["patient"], enrolled.token, pin=None)
    hostile = "/%09/evil.example"
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or "logout" in rule.endpoint:
            continue
        if rule.rule == "/readyz":  # 503 by design when the scheduler has not run; no `next` there
            continue
        values = {arg: (enrolled.token if arg == "token" else "1") for arg in rule.arguments}
        path = rule.rule
        for arg, value in values.items():
            path = path.replace(f"<int:{arg}>", value).replace(f"<{arg}>", value)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for client in clients.values():
                response = client.open(
                    f"{path}?next={hostile}",
                    method=method,
                    data={"next": "//evil.example"} if method == "POST" else None,
                )
                assert_stays(response, "http://localhost" + path)
                response.close()
