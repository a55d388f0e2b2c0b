"""Staff sign-in security: throttling, audit, TOTP (setup, sign-in, recovery codes), password rules,
session limits, and the production guard on demo accounts. All through the HTTP client."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
from sqlalchemy import select

from qol_app.models import AuditEvent, RecoveryCode, SignInThrottle, StaffUser
from qol_app.passwords import check_password, common_passwords
from tests.factories import STAFF_PASSWORD, TEST_TOTP_SECRET, isolated_client, login, no_csrf, totp_code

WRONG = "not the password at all"


def _post_login(client, username, password=STAFF_PASSWORD, addr="10.0.0.1"):
    return client.post(
        "/staff/login", data={"username": username, "password": password}, environ_base={"REMOTE_ADDR": addr}
    )


def _actions(session, since=0):
    return [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.id > since).order_by(AuditEvent.id))]


def test_account_is_locked_after_five_failures_even_with_the_right_password(app, session, factory):
    no_csrf(app)
    user = factory.staff("nurse", sites=[factory.site()])
    client = isolated_client(app)
    for _ in range(4):
        assert _post_login(client, user.username, WRONG).status_code == 200
    locked = _post_login(client, user.username, WRONG)
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.get_data(as_text=True)
    assert _post_login(client, user.username).status_code == 429  # the right password too, for now
    assert _post_login(client, user.username, addr="10.9.9.9").status_code == 429  # from anywhere
    failures = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "staff_sign_in_failed").order_by(AuditEvent.id)
    ).all()
    assert len(failures) == 5 and failures[0].entity_id == str(user.id) and failures[0].new["address"] == "10.0.0.1"
    lockout = session.scalars(select(AuditEvent).where(AuditEvent.action == "staff_sign_in_locked")).one()
    assert lockout.new["scopes"] == ["account"]
    # After the lock-out the right password works, and a success is audited.
    app.config["FROZEN_NOW"] = app.config["FROZEN_NOW"] + dt.timedelta(minutes=16)
    assert _post_login(client, user.username).status_code == 302
    ok = session.scalars(select(AuditEvent).where(AuditEvent.action == "staff_sign_in")).one()
    assert ok.actor_id == str(user.id) and ok.new["address"] == "10.0.0.1"


def test_one_address_guessing_many_accounts_is_locked(app, session, factory):
    no_csrf(app)
    app.config["STAFF_ADDRESS_MAX_FAILURES"] = 6
    site = factory.site()
    users = [factory.staff("nurse", sites=[site]) for _ in range(3)]
    client = isolated_client(app)
    for n in range(5):
        assert _post_login(client, users[n % 3].username, WRONG, addr="203.0.113.7").status_code == 200
    assert _post_login(client, "nobody-at-all", WRONG, addr="203.0.113.7").status_code == 429
    assert _post_login(client, users[0].username, addr="203.0.113.7").status_code == 429
    assert _post_login(client, users[0].username, addr="198.51.100.2").status_code == 302  # others unaffected
    row = session.scalar(select(SignInThrottle).where(SignInThrottle.scope == "address"))
    assert row.key == "203.0.113.7" and row.locked_until is not None
    # An unknown username is throttled like a real one and never stored in the trail.
    unknown = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "staff_sign_in_failed").order_by(AuditEvent.id)
    ).all()[-1]
    assert unknown.entity_id is None and "nobody-at-all" not in str(unknown.new)


def test_a_success_clears_the_account_count(app, session, factory):
    no_csrf(app)
    user = factory.staff("nurse", sites=[factory.site()])
    client = isolated_client(app)
    for _ in range(4):
        _post_login(client, user.username, WRONG)
    assert _post_login(client, user.username).status_code == 302
    other = isolated_client(app)
    for _ in range(4):
        assert _post_login(other, user.username, WRONG).status_code == 200  # four more before a lock


def test_admin_must_set_up_totp_at_first_sign_in_and_gets_recovery_codes(app, session, factory, now):
    no_csrf(app)
    admin = factory.staff("admin", totp=False)
    client = isolated_client(app)
    first = _post_login(client, admin.username)
    assert first.status_code == 302 and first.headers["Location"].endswith("/staff/login/setup")
    assert client.get("/staff/").status_code == 302  # not signed in yet
    setup = client.get("/staff/login/setup").get_data(as_text=True)
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', setup).group(1)
    assert 'class="qr"' in setup
    wrong = client.post("/staff/login/setup", data={"code": "000000"})
    assert wrong.status_code == 400 and "not right" in wrong.get_data(as_text=True)
    done = client.post("/staff/login/setup", data={"code": pyotp.TOTP(secret).at(now)})
    codes = re.findall(r"<li><code>([a-z2-9-]{19})</code></li>", done.get_data(as_text=True))
    assert done.status_code == 200 and len(codes) == 10
    assert client.get("/staff/").status_code == 200  # signed in
    session.refresh(admin)
    assert admin.has_totp and admin.totp_secret == secret
    stored = session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == admin.id)).all()
    assert len(stored) == 10 and not any(c.replace("-", "") in h for c in codes for h in stored)
    assert {"staff_2fa_enable", "staff_sign_in"} <= set(_actions(session))

    # Next time: password, then a code; a recovery code works once.
    again = isolated_client(app)
    assert _post_login(again, admin.username).headers["Location"].endswith("/staff/login/code")
    assert again.post("/staff/login/code", data={"code": codes[0].upper()}).status_code == 302
    third = isolated_client(app)
    _post_login(third, admin.username)
    assert third.post("/staff/login/code", data={"code": codes[0]}).status_code == 200  # used up
    assert third.get("/staff/").status_code == 302


def test_a_totp_code_is_accepted_once(app, session, factory, now):
    no_csrf(app)
    admin = factory.staff("admin")
    first, second = isolated_client(app), isolated_client(app)
    code = pyotp.TOTP(TEST_TOTP_SECRET).at(now)
    _post_login(first, admin.username)
    _post_login(second, admin.username)
    assert first.post("/staff/login/code", data={"code": code}).status_code == 302
    replay = second.post("/staff/login/code", data={"code": code})
    assert replay.status_code == 200 and second.get("/staff/").status_code == 302
    failures = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "staff_sign_in_failed").order_by(AuditEvent.id)
    ).all()
    assert failures[-1].new["why"] == "wrong_code"


def test_wrong_codes_count_towards_the_account_lock(app, session, factory):
    no_csrf(app)
    admin = factory.staff("admin")
    client = isolated_client(app)
    _post_login(client, admin.username)
    for _ in range(4):
        assert client.post("/staff/login/code", data={"code": "123456"}).status_code == 200
    assert client.post("/staff/login/code", data={"code": "123456"}).status_code == 429
    assert _post_login(isolated_client(app), admin.username).status_code == 429


def test_optional_totp_for_a_nurse_turn_on_and_off(app, session, factory, now):
    no_csrf(app)
    nurse = factory.staff("nurse", sites=[factory.site()])
    client = isolated_client(app)
    login(client, nurse)
    page = client.get("/staff/account/totp").get_data(as_text=True)
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    assert client.post("/staff/account/totp", data={"code": pyotp.TOTP(secret).at(now)}).status_code == 200
    session.refresh(nurse)
    assert nurse.has_totp
    nurse.totp_last_step = None
    session.flush()
    other = isolated_client(app)
    assert _post_login(other, nurse.username).headers["Location"].endswith("/staff/login/code")
    assert other.post("/staff/login/code", data={"code": pyotp.TOTP(secret).at(now)}).status_code == 302
    assert client.post("/staff/account/totp/off", data={"password": WRONG}).status_code == 400
    assert client.post("/staff/account/totp/off", data={"password": STAFF_PASSWORD}).status_code == 302
    session.refresh(nurse)
    assert not nurse.has_totp
    assert _post_login(isolated_client(app), nurse.username).headers["Location"].endswith("/staff/")


def test_an_admin_cannot_turn_totp_off_but_another_admin_can_reset_it(app, session, factory):
    no_csrf(app)
    admin, other = factory.staff("admin"), factory.staff("admin")
    client = isolated_client(app)
    login(client, admin)
    client.post("/staff/account/totp/off", data={"password": STAFF_PASSWORD})
    session.refresh(admin)
    assert admin.has_totp
    assert client.post(f"/staff/admin/users/{other.id}/totp", data={"reason": ""}).status_code == 422
    assert client.post(f"/staff/admin/users/{other.id}/totp", data={"reason": "lost phone"}).status_code == 302
    session.refresh(other)
    assert not other.has_totp
    # The reset admin must set up a new app at the next sign-in.
    assert _post_login(isolated_client(app), other.username).headers["Location"].endswith("/staff/login/setup")


def test_totp_code_helper_matches_the_app_clock(client):
    assert totp_code(client, TEST_TOTP_SECRET) == pyotp.TOTP(TEST_TOTP_SECRET).at(
        client.application.config["FROZEN_NOW"]
    )


@pytest.mark.parametrize(
    "password,ok",
    [
        ("short pass", False),  # 10 characters
        ("qwerty123456", False),  # on the common list
        ("QWERTY123456", False),  # case does not help
        ("aaaaaaaaaaaaaa", False),
        ("a long enough password", True),
    ],
)
def test_password_rule(password, ok):
    assert "qwerty123456" in common_passwords()
    if ok:
        check_password(password, username="li")
    else:
        with pytest.raises(ValueError):
            check_password(password, username="li")


def test_common_password_refused_on_the_account_page_and_in_the_cli(app, session, factory):
    no_csrf(app)
    nurse = factory.staff("nurse", sites=[factory.site()])
    client = isolated_client(app)
    login(client, nurse)
    response = client.post("/staff/account", data={"current": STAFF_PASSWORD, "new": "1qaz2wsx3edc"})
    assert response.status_code == 400 and "common passwords" in response.get_data(as_text=True)
    result = app.test_cli_runner().invoke(
        args=["users", "create", "x.li", "--role", "nurse", "--password", "123456123456"]
    )
    assert result.exit_code != 0 and "common passwords" in result.output
    assert session.scalar(select(StaffUser).where(StaffUser.username == "x.li")) is None


def test_session_ends_after_the_absolute_limit_however_active(app, session, factory, now):
    no_csrf(app)
    app.config["STAFF_SESSION_MAX_HOURS"] = 1
    nurse = factory.staff("nurse", sites=[factory.site()])
    client = isolated_client(app)
    login(client, nurse)
    for minutes in (20, 40, 59):  # active every 20 minutes: never idle
        app.config["FROZEN_NOW"] = now + dt.timedelta(minutes=minutes)
        assert client.get("/staff/").status_code == 200
    app.config["FROZEN_NOW"] = now + dt.timedelta(minutes=61)
    response = client.get("/staff/")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


def test_production_refuses_demo_accounts(app, session, now):
    from qol_app.demo import build

    build(session, "test-secret", now, n_patients=2)
    no_csrf(app)
    app.config["ENV"] = "production"
    refused = _post_login(isolated_client(app), "nurse.s01", "demo-nurse.s01-pass")
    assert refused.status_code == 403 and "Demo accounts" in refused.get_data(as_text=True)
    app.config["ENV"] = "development"
    assert _post_login(isolated_client(app), "nurse.s01", "demo-nurse.s01-pass").status_code == 302
