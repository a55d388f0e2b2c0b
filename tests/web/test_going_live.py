"""The README's "going live" sequence, command by command, on a fresh empty database.

Each backend gets a database of its own created here (not the session's migrated one): the
sequence starts with ``qol db upgrade`` on nothing, with ``QOL_ENV=production``.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest
from click.testing import CliRunner
from flask.cli import ScriptInfo
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from qol_app.cli import main
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL, REQUIRE_PG

PASSWORD = "a strong go-live password"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'live.sqlite'}"
        return
    if _PG_PROBLEM is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required but unreachable: {_PG_PROBLEM}")
        pytest.skip(f"PostgreSQL not reachable: {_PG_PROBLEM}")
    name = f"qol_live_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_fresh_database_to_first_enrolled_patient_with_commands_only(fresh_url, tmp_path):
    env = {
        "QOL_ENV": "production",
        "QOL_DATABASE_URL": fresh_url,
        "QOL_SECRET_KEY": "go-live-secret-0123456789abcdef0123456789",
        "QOL_PUBLIC_BASE_URL": "https://qol.example.org",
        # Backends that reach people (`qol check` refuses log-only ones in production).
        "QOL_MAIL_BACKEND": "smtp",
        "QOL_SMTP_HOST": "smtp.example.org",
        "QOL_SMS_BACKEND": "webhook",
        "QOL_SMS_WEBHOOK_URL": "https://sms.example.org/send",
        "QOL_SMS_WEBHOOK_SECRET": "go-live-webhook-secret",
    }
    runner = CliRunner()
    apps = []

    def make_app():  # the `qol` entry point's own factory, remembered so its pool can be closed
        from qol_app.cli import _make_app

        apps.append(_make_app())
        return apps[-1]

    def invoke(*args: str):
        try:
            return runner.invoke(main, list(args), env=env, obj=ScriptInfo(create_app=make_app))
        finally:
            while apps:
                apps.pop().extensions["qol_db"]["engine"].dispose()

    def qol(*args: str) -> str:
        result = invoke(*args)
        assert result.exit_code == 0, f"qol {' '.join(args)}:\n{result.output}\n{result.exception!r}"
        return result.output

    assert "is at head" in qol("db", "upgrade")
    qol("users", "create", "li.admin", "--name", "Li Ming", "--role", "admin", "--password", PASSWORD)
    qol(
        "sites", "add", "S01", "--name", "Fudan University Shanghai Cancer Center", "--timezone", "Asia/Shanghai",
        "--language", "zh_Hans", "--emergency-phone", "120", "--phone", "021-6417-5590",
    )  # fmt: skip
    assert "S01\tAsia/Shanghai\tzh_Hans\t120" in qol("sites", "list")
    qol("users", "create", "wang.nurse", "--name", "Wang Fang", "--role", "nurse", "--site", "S01",
        "--language", "zh_Hans", "--password", PASSWORD)  # fmt: skip
    qol("users", "create", "zhao.pi", "--role", "investigator", "--site", "S01", "--password", PASSWORD)
    checked = qol("check")
    assert "qol check (production rules)" in checked and "0 error(s)" in checked, checked
    assert "SCHEDULE_FILE" in checked and "ALERT_RULES_FILE" in checked
    enrolled = qol("patients", "enrol", "S01-001", "--site", "S01", "--arm", "A", "--randomized", "2026-03-08",
                   "--phone", "+86 138 0000 0000")  # fmt: skip
    link = re.search(r"personal link \(shown once\): https://qol\.example\.org(/p/l/\S+)", enrolled).group(1)
    pin = re.search(r"PIN: (\d{6})", enrolled).group(1)
    assert "1 form(s) planned" in enrolled  # the baseline, from randomization
    # The demo stays out of a production database.
    refused = invoke("demo")
    assert refused.exit_code != 0 and "production" in refused.output

    # What the commands made works on the web: the nurse sees the patient, the patient's link opens.
    from qol_app import create_app
    from tests.factories import IsolatedClient

    app = create_app({"DATABASE_URL": fresh_url, "SECRET_KEY": "go-live-secret-0123456789abcdef0123456789", "TESTING": True,
                      "WTF_CSRF_ENABLED": False, "ENV": "production"})  # fmt: skip
    app.test_client_class = IsolatedClient  # the requests below run inside the test's app context
    try:
        with app.app_context():
            nurse = app.test_client()
            signed_in = nurse.post("/staff/login", data={"username": "wang.nurse", "password": PASSWORD})
            assert signed_in.status_code == 302, signed_in.get_data(as_text=True)[:500]
            assert "S01-001" in nurse.get("/staff/patients").get_data(as_text=True)
            patient = app.test_client()
            assert patient.get(link).status_code == 200
            assert patient.post(link, data={"pin": pin}).status_code == 302
            admin = app.test_client()
            first = admin.post("/staff/login", data={"username": "li.admin", "password": PASSWORD})
            assert first.headers["Location"].endswith("/staff/login/setup")  # admins set up TOTP first
    finally:
        app.extensions["qol_db"]["engine"].dispose()
