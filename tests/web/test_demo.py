"""`qol demo`: idempotent, realistic, and its printed links and logins work."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from qol_app.models import Patient, Response, Site, StaffUser, Timepoint
from qol_app.services.audit import verify
from qol_app.services.responses import RELATIONSHIPS
from tests.factories import isolated_client


def _counts(session):
    return {
        model.__name__: session.scalar(select(func.count()).select_from(model))
        for model in (Site, StaffUser, Patient, Timepoint, Response)
    }


def test_demo_is_idempotent_and_prints_working_links(app, session):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "--patients", "8"])
    assert first.exit_code == 0, first.output
    assert "Demo data created." in first.output
    counts = _counts(session)
    assert counts["Site"] == 2 and counts["StaffUser"] == 5 and counts["Patient"] == 8
    assert counts["Response"] > 0
    arms = set(session.scalars(select(Patient.arm)))
    assert arms == {"A", "B"}
    zones = set(session.scalars(select(Site.timezone)))
    assert len(zones) == 2
    statuses = set(session.scalars(select(Timepoint.status)))
    assert {"completed", "missed"} <= statuses
    relationships = set(session.scalars(select(Timepoint.respondent_relationship))) - {None}
    assert relationships and relationships <= set(RELATIONSHIPS)  # the demo stores the app's own codes

    second = runner.invoke(args=["demo", "--patients", "8"])
    assert "already present" in second.output
    assert _counts(session) == counts
    assert verify(session) == []

    links = re.findall(r"http://[^/]+(/p/l/[0-9a-f]{64})\s+PIN (\d{6})", first.output)
    assert links, first.output
    assert links == re.findall(r"http://[^/]+(/p/l/[0-9a-f]{64})\s+PIN (\d{6})", second.output)
    response = isolated_client(app).get(links[0][0])
    assert response.status_code == 200

    login = re.search(r"nurse\s+(nurse\.s01)\s+password: (\S+)", first.output)
    client = isolated_client(app)
    page = client.get("/staff/login")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    signed_in = client.post(
        "/staff/login", data={"username": login.group(1), "password": login.group(2), "csrf_token": token}
    )
    assert signed_in.status_code == 302, signed_in.get_data(as_text=True)[:3000]


def test_demo_is_refused_in_production(app, session):
    app.config["ENV"] = "production"
    result = app.test_cli_runner().invoke(args=["demo", "--patients", "2"])
    assert result.exit_code != 0 and "production" in result.output
    assert _counts(session)["StaffUser"] == 0


def test_demo_refuses_a_database_with_real_data(app, session, factory):
    factory.site(code="S01", name="A real hospital")  # same code as a demo site, but not a demo row
    result = app.test_cli_runner().invoke(args=["demo", "--patients", "2"])
    assert result.exit_code != 0 and "did not create" in result.output
    assert _counts(session)["Patient"] == 0 and _counts(session)["StaffUser"] == 0


def test_demo_admin_signs_in_with_the_printed_totp_key(app, session):
    import pyotp

    first = app.test_cli_runner().invoke(args=["demo", "--patients", "2"])
    key = re.search(r"admin\s+password: (\S+)\s+TOTP key: ([A-Z2-7]+)", first.output)
    assert key, first.output
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    step = client.post("/staff/login", data={"username": "admin", "password": key.group(1)})
    assert step.headers["Location"].endswith("/staff/login/code")
    code = pyotp.TOTP(key.group(2)).at(app.config["FROZEN_NOW"])
    assert client.post("/staff/login/code", data={"code": code}).status_code == 302
    assert client.get("/staff/admin/users").status_code == 200
