"""Security headers on a response of every route in ``url_map`` (and on errors and static files).

Each route is requested once, by someone it is meant for (so the response is the page itself,
not a redirect to sign in), and once more by a stranger; every response must carry the headers.
"""

from __future__ import annotations

import datetime as dt

from qol_app.security import CSP
from qol_app.services import treatment_events
from qol_app.services.audit import Actor
from tests.factories import add_alert, add_response, isolated_client, login, no_csrf, sign_in

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def check(response, what: str) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, f"{what}: {name} is {response.headers.get(name)!r}"
    assert response.headers.get("X-Request-ID"), what
    if "/p/audio/" in what and response.status_code == 200:  # a licensed recording, immutable under its hash
        directives = {d.strip() for d in response.headers.get("Cache-Control", "").split(",")}
        assert directives == {"private", "max-age=31536000", "immutable"}, what
    elif "/static/" not in what:
        assert response.headers.get("Cache-Control") == "no-store", what


def _recording(session, now) -> str:
    """A stored recording (as an overlay's import leaves it), for ``/p/audio/<sha256>``."""
    import hashlib

    from qol_app.models import WordingAudio

    data = b"RIFF\x24\x00\x00\x00WAVEfmt "
    digest = hashlib.sha256(data).hexdigest()
    session.add(WordingAudio(sha256=digest, content_type="audio/wav", size=len(data), data=data, imported_at=now))
    session.flush()
    return digest


def test_every_route_sends_the_security_headers(app, factory, session, now):
    no_csrf(app)
    site = factory.site()
    users = {role: factory.staff(role, sites=[site]) for role in ("nurse", "admin", "statistician")}
    enrolled = factory.patient(site, pin=None, language="en")
    patient = enrolled.patient
    event, _ = treatment_events.record_event(
        session, Actor.system("t"), patient, kind="systemic_cycle", date=now.date(), now=now
    )
    tp = factory.timepoint(enrolled, instruments=["eq5d5l"], respondent="self")
    done = factory.timepoint(enrolled, instruments=["eq5d5l"], respondent="self")
    response = add_response(session, done, at=now)
    alert = add_alert(session, patient, at=now - dt.timedelta(hours=1))
    values = {
        "patient_id": patient.id,
        "timepoint_id": tp.id,
        "event_id": event.id,
        "alert_id": alert.id,
        "response_id": response.id,
        "user_id": users["nurse"].id,
        "instrument_id": "eq5d5l",
        "page_no": 1,
        "token": enrolled.token,
        "filename": "app.css",
        "site_id": site.id,
        "lock_id": 1,  # none: the 404 page carries the headers too
        "job_id": 1,
        "task_id": 1,
        "sha256": _recording(session, now),
    }

    clients = {"anonymous": isolated_client(app), "patient": isolated_client(app)}
    sign_in(clients["patient"], enrolled.token, pin=None)
    for role, user in users.items():
        clients[role] = isolated_client(app)
        login(clients[role], user)

    def meant_for(endpoint: str) -> str:
        if endpoint in ("patient.link", "patient.link_sign_in", "nurse.login") or "." not in endpoint:
            return "anonymous"
        if endpoint.startswith("patient."):
            return "patient"
        if endpoint.startswith("stats."):
            return "statistician"
        return "admin" if endpoint.startswith("nurse.user") else "nurse"

    seen = set()
    # Sign-outs last: they end the session the other requests need.
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: ("logout" in r.endpoint, r.rule)):
        url = rule.build({k: v for k, v in values.items() if k in rule.arguments})[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for who in (meant_for(rule.endpoint), "anonymous"):
                response = clients[who].open(url, method=method, data={} if method == "POST" else None)
                check(response, f"{method} {url} ({who}, {response.status_code})")
                response.close()
            seen.add((rule.endpoint, method))
    assert len(seen) >= 40
    for path in ("/no/such/page", "/p/t/999999/eq5d5l/1", "/static/none.css"):
        check(clients["anonymous"].get(path), f"GET {path}")


def test_strict_transport_security_when_cookies_are_secure(app, client):
    app.config["SESSION_COOKIE_SECURE"] = True
    response = client.get("/staff/login")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    check(response, "GET /staff/login")
