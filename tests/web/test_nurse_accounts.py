"""Staff accounts: sign-in/out, server-side session end on disable, admin pages, `qol users`, language, CSRF."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from qol_app.models import AuditEvent, LoginSession, StaffUser
from qol_app.passwords import check_secret
from tests.factories import STAFF_PASSWORD, csrf_token, isolated_client, login, no_csrf


@pytest.fixture
def site(factory):
    return factory.site(code="A1")


def _client(app):
    return isolated_client(app)


def test_wrong_password_and_disabled_account_cannot_sign_in(app, session, factory, site):
    no_csrf(app)
    user = factory.staff("nurse", sites=[site])
    client = _client(app)
    assert client.post("/staff/login", data={"username": user.username, "password": "nope"}).status_code == 200
    user.active = False
    session.flush()
    response = client.post("/staff/login", data={"username": user.username, "password": STAFF_PASSWORD})
    assert response.status_code == 200 and "disabled" in response.get_data(as_text=True)


def test_logout_ends_the_session_on_the_server(app, session, factory, site):
    no_csrf(app)
    user = factory.staff("nurse", sites=[site])
    client = _client(app)
    login(client, user)
    with client.session_transaction() as cookie:
        stolen = dict(cookie)
    assert client.post("/staff/logout").status_code == 302
    replay = _client(app)
    with replay.session_transaction() as cookie:
        cookie.update(stolen)
    assert replay.get("/staff/").status_code == 302  # the old cookie no longer works
    row = session.scalar(select(LoginSession).where(LoginSession.subject_id == user.id))
    assert row.end_reason == "logout"


def test_disabling_an_account_ends_its_live_session_at_once(app, session, factory, site):
    no_csrf(app)
    nurse = factory.staff("nurse", sites=[site])
    admin = factory.staff("admin")
    nurse_client, admin_client = _client(app), _client(app)
    login(nurse_client, nurse)
    login(admin_client, admin)
    assert nurse_client.get("/staff/").status_code == 200
    assert (
        admin_client.post(f"/staff/admin/users/{nurse.id}/active", data={"enable": "0", "reason": ""}).status_code
        == 422
    )
    assert nurse_client.get("/staff/").status_code == 200  # no reason given: nothing changed
    admin_client.post(f"/staff/admin/users/{nurse.id}/active", data={"enable": "0", "reason": "left the unit"})
    response = nurse_client.get("/staff/")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]
    session.expire_all()
    row = session.scalar(
        select(LoginSession).where(LoginSession.subject_id == nurse.id, LoginSession.subject_type == "staff")
    )
    assert row.ended_at is not None and row.end_reason == "disabled"
    audit = session.scalar(select(AuditEvent).where(AuditEvent.action == "staff_disable"))
    assert audit.reason == "left the unit" and audit.actor_id == str(admin.id)
    # An admin cannot lock themselves out.
    admin_client.post(f"/staff/admin/users/{admin.id}/active", data={"enable": "0", "reason": "oops"})
    session.refresh(admin)
    assert admin.active


def test_admin_creates_account_manages_sites_role_and_password(app, session, factory, site):
    no_csrf(app)
    admin = factory.staff("admin")
    other = factory.site(code="A2")
    client = _client(app)
    login(client, admin)
    assert client.get("/staff/admin/users").status_code == 200
    short = client.post(
        "/staff/admin/users/new",
        data={
            "username": "n.li",
            "full_name": "Li Na",
            "role": "nurse",
            "language": "zh_Hans",
            "site_id": site.id,
            "password": "short",
        },
    )
    assert short.status_code == 400 and session.scalar(select(StaffUser).where(StaffUser.username == "n.li")) is None
    created = client.post(
        "/staff/admin/users/new",
        data={
            "username": "n.li",
            "full_name": "Li Na",
            "role": "nurse",
            "language": "zh_Hans",
            "site_id": site.id,
            "password": "a long first password",
        },
    )
    assert created.status_code == 302
    user = session.scalar(select(StaffUser).where(StaffUser.username == "n.li"))
    assert user.site_ids == {site.id} and user.language == "zh_Hans"
    assert client.get(f"/staff/admin/users/{user.id}").status_code == 200
    sites_url = f"/staff/admin/users/{user.id}/sites"
    client.post(sites_url, data={"op": "add", "site_id": other.id})
    session.refresh(user)
    assert user.site_ids == {site.id, other.id}
    client.post(sites_url, data={"op": "remove", "site_id": other.id, "reason": ""})
    session.refresh(user)
    assert other.id in user.site_ids  # removal needs a reason
    client.post(sites_url, data={"op": "remove", "site_id": other.id, "reason": "moved"})
    session.refresh(user)
    assert user.site_ids == {site.id}
    client.post(f"/staff/admin/users/{user.id}/role", data={"role": "investigator", "reason": "promoted"})
    client.post(f"/staff/admin/users/{user.id}/password", data={"password": "reset password 123", "reason": "forgot"})
    session.refresh(user)
    assert user.role == "investigator" and check_secret(user.password_hash, "reset password 123")
    actions = set(
        session.scalars(
            select(AuditEvent.action).where(
                AuditEvent.entity_id == str(user.id), AuditEvent.entity_type == "staff_users"
            )
        )
    )
    assert {"staff_create", "staff_add_site", "staff_remove_site", "staff_role", "staff_password"} <= actions


def test_qol_users_cli(app, session, factory, site):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "users",
            "create",
            "cli.nurse",
            "--name",
            "CLI Nurse",
            "--role",
            "nurse",
            "--site",
            site.code,
            "--password",
            "cli password 1",
        ]
    )
    assert result.exit_code == 0, result.output
    user = session.scalar(select(StaffUser).where(StaffUser.username == "cli.nurse"))
    assert user.site_ids == {site.id}
    listed = runner.invoke(args=["users", "list"]).output
    assert f"cli.nurse\tnurse\tactive\t{site.code}" in listed
    assert (
        runner.invoke(
            args=["users", "create", "cli.nurse", "--role", "nurse", "--password", "cli password 1"]
        ).exit_code
        != 0
    )
    assert runner.invoke(args=["users", "set-password", "cli.nurse", "--password", "short"]).exit_code != 0
    assert runner.invoke(args=["users", "set-password", "cli.nurse", "--password", "cli password 2"]).exit_code == 0
    other = factory.site(code="A3")
    assert runner.invoke(args=["users", "add-site", "cli.nurse", other.code]).exit_code == 0
    assert runner.invoke(args=["users", "remove-site", "cli.nurse", other.code, "--reason", "x"]).exit_code == 0
    assert runner.invoke(args=["users", "add-site", "cli.nurse", "NOPE"]).exit_code != 0
    # Disabling from the shell ends a live web session too.
    no_csrf(app)
    client = _client(app)
    client.post("/staff/login", data={"username": "cli.nurse", "password": "cli password 2"})
    assert client.get("/staff/").status_code == 200
    assert runner.invoke(args=["users", "disable", "cli.nurse", "--reason", "left"]).exit_code == 0
    assert client.get("/staff/").status_code == 302
    assert runner.invoke(args=["users", "enable", "cli.nurse", "--reason", "back"]).exit_code == 0
    session.refresh(user)
    assert user.active and check_secret(user.password_hash, "cli password 2") and user.site_ids == {site.id}
    actions = [
        a
        for a in session.scalars(select(AuditEvent.action).where(AuditEvent.actor_id == "cli").order_by(AuditEvent.id))
    ]
    assert actions == [
        "staff_create",
        "staff_password",
        "staff_add_site",
        "staff_remove_site",
        "staff_disable",
        "staff_enable",
    ]


def test_idle_staff_session_expires(app, factory, site, now):
    no_csrf(app)
    client = _client(app)
    login(client, factory.staff("nurse", sites=[site]))
    app.config["FROZEN_NOW"] = now + dt.timedelta(minutes=app.config["STAFF_IDLE_MINUTES"] + 1)
    response = client.get("/staff/")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


def test_language_is_the_staff_preference_and_switchable(app, session, factory, site):
    no_csrf(app)
    user = factory.staff("nurse", sites=[site], language="zh_Hans")
    client = _client(app)
    login(client, user)
    assert 'lang="zh-Hans"' in client.get("/staff/").get_data(as_text=True)
    client.post("/staff/language", data={"language": "en", "next": "/staff/"})
    session.refresh(user)
    assert user.language == "en"
    assert '<html lang="en">' in client.get("/staff/").get_data(as_text=True)
    # Before sign-in the choice is kept on the browser.
    anonymous = _client(app)
    anonymous.post("/staff/language", data={"language": "zh_Hans"})
    assert 'lang="zh-Hans"' in anonymous.get("/staff/login").get_data(as_text=True)


def test_statistician_lands_on_exports_and_next_is_not_an_open_redirect(app, factory, site):
    no_csrf(app)
    stat = factory.staff("statistician")
    client = _client(app)
    response = client.post("/staff/login", data={"username": stat.username, "password": STAFF_PASSWORD})
    # Statisticians start at the exports when that blueprint is installed, else on their account page.
    expected = "/stats/" if "stats" in app.blueprints else "/staff/account"
    assert response.headers["Location"].endswith(expected)
    assert client.get("/staff/").status_code == 403  # no dashboard, no patient pages
    nurse = factory.staff("nurse", sites=[site])
    client = _client(app)
    response = client.post(
        "/staff/login?next=//evil.example/x", data={"username": nurse.username, "password": STAFF_PASSWORD}
    )
    assert response.headers["Location"].endswith("/staff/")


def test_every_staff_post_needs_a_csrf_token(app, factory, site):
    app.config["STAFF_TOTP_REQUIRED_ROLES"] = []  # one password step, so the CSRF token alone is tested
    user = factory.staff("admin", totp=False)
    client = _client(app)
    token = csrf_token(client, "/staff/login")
    assert (
        client.post(
            "/staff/login", data={"username": user.username, "password": STAFF_PASSWORD, "csrf_token": token}
        ).status_code
        == 302
    )
    posts = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("nurse.") and "POST" in r.methods]
    assert len(posts) > 15
    for rule in posts:
        url = rule.rule.replace("<int:", "<").replace("<instrument_id>", "eq5d5l")
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", "1")
        response = client.post(url, data={"reason": "x"})
        assert response.status_code == 400, f"{rule.endpoint} accepted a POST without a CSRF token"
    assert client.get("/staff/").status_code == 200  # still signed in: nothing was changed
