"""Operations: /healthz and /readyz, proxy awareness, JSON logs, `qol check`, site questionnaire folders."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
import yaml
from sqlalchemy import select, text

from qol_app import create_app, logs
from qol_app.db import db
from qol_app.instruments import get_registry
from qol_app.instruments.loader import clear_registry_cache
from qol_app.models import Timepoint
from qol_app.notify.channels import SMS_GATEWAYS, register_sms_gateway
from qol_app.paths import QUESTIONNAIRE_DIR
from qol_app.scheduler.jobs import run_sweep
from qol_app.services import heartbeat, schedules, timepoints
from qol_app.services.audit import Actor
from qol_app.services.config_check import check_config
from tests.factories import IsolatedClient

SAFE = {
    "ENV": "production",
    "SECRET_KEY": "3f1c0e8a9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e",
    "SECRET_KEY_SOURCE": "configured",
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "PUBLIC_BASE_URL": "https://qol.example.org",
    "MAIL_BACKEND": "smtp",
    "SMS_BACKEND": "acme-test",
    "DEBUG": False,
    "TESTING": False,
    "DATABASE_URL": "postgresql+psycopg://qol@db/qol",
    "TRUSTED_PROXIES": 1,
}


@pytest.fixture
def make_app():
    """``create_app`` for apps of their own (not the rolled-back test app); engines disposed after."""
    made = []

    def make(**config):
        application = create_app({"TESTING": True, "SECRET_KEY": "x"} | config)
        application.test_client_class = IsolatedClient
        made.append(application)
        return application

    yield make
    for application in made:
        application.extensions["qol_db"]["engine"].dispose()


@pytest.fixture
def acme_gateway():
    @register_sms_gateway("acme-test")
    class Acme:
        def __init__(self, config):
            pass

        def send_sms(self, to, text, *, message_id):
            pass

    yield Acme
    SMS_GATEWAYS.pop("acme-test", None)


# ---- /healthz and /readyz -----------------------------------------------------------------
def test_healthz_answers_without_the_database(tmp_path):
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_when_everything_is_fine(app, client, session, now):
    heartbeat.beat(session, now - dt.timedelta(minutes=2))
    session.commit()
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["status"] == "ready"
    assert set(response.json["checks"]) == {"database", "migrations", "scheduler", "schedule"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_fails_when_the_heartbeat_is_stale(app, client, session, now):
    limit = app.config["SCHEDULER_STALE_MINUTES"]
    heartbeat.beat(session, now - dt.timedelta(minutes=limit + 1))
    session.commit()
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["scheduler"]["ok"] is False and "stale" in checks["scheduler"]["detail"]
    assert checks["database"]["ok"] and checks["migrations"]["ok"]


def test_readyz_fails_when_the_scheduler_never_ran(client):
    response = client.get("/readyz")
    assert response.status_code == 503 and "never" in response.json["checks"]["scheduler"]["detail"]


def test_readyz_fails_when_migrations_lag(app, client, session, now):
    heartbeat.beat(session, now)
    session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    session.commit()
    response = client.get("/readyz")
    assert response.status_code == 503
    migrations = response.json["checks"]["migrations"]
    assert migrations["ok"] is False and "at 0001" in migrations["detail"] and "qol db upgrade" in migrations["detail"]


def test_readyz_fails_when_the_database_is_unreachable():
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"]["ok"] is False
    assert "unreachable" in response.json["checks"]["database"]["detail"]


def test_favicon(client):
    response = client.get("/favicon.ico")
    data = response.data
    response.close()
    assert response.status_code == 200 and data[:4] == b"\x00\x00\x01\x00"
    assert 'rel="icon"' in client.get("/staff/login").get_data(as_text=True)


# ---- proxy awareness ----------------------------------------------------------------------
def _whoami(app):
    @app.get("/whoami-test")
    def whoami():
        from flask import request

        return {"addr": request.remote_addr, "scheme": request.scheme, "host": request.host}

    return app.test_client()


FORWARDED = {
    "X-Forwarded-For": "198.51.100.7, 203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "qol.example.org",
}


def test_trusted_proxy_headers_give_the_client_address(make_app, database_url):
    app = make_app(DATABASE_URL=database_url, TRUSTED_PROXIES=1)
    seen = _whoami(app).get("/whoami-test", headers=FORWARDED, environ_base={"REMOTE_ADDR": "127.0.0.1"}).json
    # One proxy: only the address it appended counts; what the client itself claimed is ignored.
    assert seen == {"addr": "203.0.113.9", "scheme": "https", "host": "qol.example.org"}


def test_without_trusted_proxies_forwarded_headers_are_ignored(make_app, database_url):
    app = make_app(DATABASE_URL=database_url)
    seen = _whoami(app).get("/whoami-test", headers=FORWARDED, environ_base={"REMOTE_ADDR": "127.0.0.1"}).json
    assert seen == {"addr": "127.0.0.1", "scheme": "http", "host": "localhost"}


# ---- JSON logs ----------------------------------------------------------------------------
@pytest.fixture
def json_logs():
    logger = logging.getLogger(logs.ROOT_LOGGER)
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


def test_json_log_lines_carry_the_request_id_and_client(make_app, database_url, json_logs, capsys):
    app = make_app(DATABASE_URL=database_url, LOG_FORMAT="json", TRUSTED_PROXIES=1)

    @app.get("/log-test")
    def log_test():
        app.logger.warning("something happened")
        return "ok"

    client = app.test_client()
    capsys.readouterr()
    response = client.get("/log-test", headers={"X-Request-ID": "req-42", "X-Forwarded-For": "203.0.113.9"})
    client.get("/p/l/secret-token-in-path")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert response.headers["X-Request-ID"] == "req-42"
    app_line = next(line for line in lines if line["message"] == "something happened")
    assert app_line["request_id"] == "req-42" and app_line["level"] == "WARNING"
    assert app_line["remote_addr"] == "203.0.113.9" and app_line["time"].endswith("+00:00")
    access = [line for line in lines if line["logger"] == "qol_app.access"]
    assert access[0]["request_id"] == "req-42" and access[0]["status"] == 200 and access[0]["rule"] == "/log-test"
    assert access[0]["duration_ms"] >= 0
    # The personal link is a credential: logged as its route, never as the path itself.
    assert access[1]["rule"] == "/p/l/<token>" and all("secret-token" not in json.dumps(line) for line in lines)


def test_unknown_log_format_is_refused(make_app, database_url, json_logs):
    with pytest.raises(RuntimeError, match="LOG_FORMAT='xml' is unknown"):
        make_app(DATABASE_URL=database_url, LOG_FORMAT="xml")


# ---- qol check ----------------------------------------------------------------------------
def _levels(findings):
    return {f.setting: f.level for f in findings if f.level != "ok"}


def test_check_passes_a_safe_production_configuration(acme_gateway):
    assert _levels(check_config(SAFE)) == {}


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"SECRET_KEY": None, "SECRET_KEY_SOURCE": "instance"}, "SECRET_KEY"),
        ({"SECRET_KEY": "change-me"}, "SECRET_KEY"),
        ({"SECRET_KEY": "short-but-not-known"}, "SECRET_KEY"),
        ({"SESSION_COOKIE_SECURE": False}, "SESSION_COOKIE_SECURE"),
        ({"MAIL_BACKEND": "outbox"}, "MAIL_BACKEND"),
        ({"SMS_BACKEND": "outbox"}, "SMS_BACKEND"),
        ({"SMS_BACKEND": "log"}, "SMS_BACKEND"),
        ({"PUBLIC_BASE_URL": "http://qol.example.org"}, "PUBLIC_BASE_URL"),
        ({"PUBLIC_BASE_URL": ""}, "PUBLIC_BASE_URL"),
        ({"DEBUG": True}, "DEBUG"),
    ],
)
def test_check_refuses_each_unsafe_setting_in_production(acme_gateway, change, setting):
    findings = _levels(check_config(SAFE | change))
    assert findings == {setting: "error"}


def test_a_gateway_that_says_it_only_logs_is_unsafe(acme_gateway):
    acme_gateway.LOG_ONLY = True
    assert _levels(check_config(SAFE)) == {"SMS_BACKEND": "error"}


def test_unsafe_settings_are_warnings_outside_production(acme_gateway):
    findings = _levels(check_config(SAFE | {"ENV": "development", "SESSION_COOKIE_SECURE": False}))
    assert findings == {"SESSION_COOKIE_SECURE": "warning"}


def test_unknown_backend_is_an_error_everywhere():
    findings = _levels(check_config(SAFE | {"ENV": "development", "SMS_BACKEND": "nosuch"}))
    assert findings["SMS_BACKEND"] == "error"


def test_check_command_exit_status(app, acme_gateway):
    runner = app.test_cli_runner()
    app.config.update(SAFE | {"DATABASE_URL": app.config["DATABASE_URL"]})
    result = runner.invoke(args=["check"])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output and "migrations: at head" in result.output
    app.config["SESSION_COOKIE_SECURE"] = False
    result = runner.invoke(args=["check"])
    assert result.exit_code == 1 and "ERROR   SESSION_COOKIE_SECURE" in result.output
    app.config["ENV"] = "development"
    assert runner.invoke(args=["check"]).exit_code == 0
    assert runner.invoke(args=["check", "--production"]).exit_code == 1


def test_check_command_reports_a_broken_schedule(app, tmp_path):
    broken = tmp_path / "schedule.yaml"
    broken.write_text("rules: [")
    app.config["SCHEDULE_FILE"] = str(broken)
    result = app.test_cli_runner().invoke(args=["check", "--no-database"])
    assert result.exit_code == 1 and "ERROR   SCHEDULE_FILE: does not load" in result.output


# ---- a site's questionnaire folder --------------------------------------------------------
@pytest.fixture
def site_folder(tmp_path):
    folder = tmp_path / "site-questionnaires"
    folder.mkdir()
    eq5d = yaml.safe_load((QUESTIONNAIRE_DIR / "eq5d5l.yaml").read_text())
    eq5d["name"]["en"] = "EQ-5D-5L (site's own file)"
    (folder / "eq5d5l.yaml").write_text(yaml.safe_dump(eq5d, allow_unicode=True))
    extra = yaml.safe_load((QUESTIONNAIRE_DIR / "symptom_diary.yaml").read_text())
    extra["id"] = "site_diary"
    (folder / "site_diary.yaml").write_text(yaml.safe_dump(extra, allow_unicode=True))
    yield folder
    clear_registry_cache()


def test_site_folder_adds_and_overrides_instruments(site_folder):
    registry = get_registry(site_folder)
    shipped = get_registry()
    assert set(registry) == set(shipped) | {"site_diary"}
    assert registry.get("eq5d5l").name.get("en") == "EQ-5D-5L (site's own file)"
    assert registry.get("eortc_qlq_c30") == shipped.get("eortc_qlq_c30")
    assert registry.value_set("CN_2017") is not None  # shipped value sets still apply to the override


def test_configured_site_folder_reaches_the_app(app, site_folder):
    app.config["QUESTIONNAIRE_DIR"] = str(site_folder)
    result = app.test_cli_runner().invoke(args=["instruments", "list"])
    assert result.exit_code == 0 and "site_diary" in result.output


def test_a_broken_site_file_is_reported_by_name(app, site_folder):
    (site_folder / "broken.yaml").write_text("id: [")
    app.config["QUESTIONNAIRE_DIR"] = str(site_folder)
    result = app.test_cli_runner().invoke(args=["check", "--no-database"])
    assert (
        result.exit_code == 1 and "QUESTIONNAIRE_DIR: does not load" in result.output and "broken.yaml" in result.output
    )


def test_missing_site_folder_is_an_error(app, tmp_path):
    app.config["QUESTIONNAIRE_DIR"] = str(tmp_path / "nope")
    result = app.test_cli_runner().invoke(args=["check", "--no-database"])
    assert result.exit_code == 1 and "QUESTIONNAIRE_DIR" in result.output


# ---- HTTPS behind the proxy ---------------------------------------------------------------
def test_forms_work_over_https_although_pages_send_no_referer(app, factory, session):
    """Our pages say Referrer-Policy: no-referrer, so a browser posts without a Referer. Flask-WTF's
    strict HTTPS Referer check would refuse every form behind TLS (it did, before the deployment
    ran over HTTPS)."""
    from tests.factories import hidden_fields, isolated_client

    enrolled = factory.patient()
    session.commit()
    client = isolated_client(app)
    page = client.get(f"/p/l/{enrolled.token}", base_url="https://localhost")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    form = {"csrf_token": hidden_fields(page.get_data(as_text=True))["csrf_token"], "pin": "123456"}
    response = client.post(f"/p/l/{enrolled.token}", data=form, base_url="https://localhost")
    assert response.status_code == 302, response.get_data(as_text=True)[:300]


# ---- schedule drift: the configured file is not the version in force ----------------------
@pytest.fixture
def upgraded(session, factory, now):
    """A database planned with conquer_default@1 (as the i14a migration marks older rows), while the
    configured file is conquer_default@2: an upgrade without ``qol schedule apply``."""
    site = factory.site(code="DR1")
    enrolled = factory.patient(site, arm="B", randomization_date=now.date() - dt.timedelta(days=2))
    timepoints.reconcile_patient(session, Actor.system("tests"), enrolled.patient, now)
    assert session.scalar(select(Timepoint.schedule_version).limit(1)) == "conquer_default@2"
    session.execute(text("UPDATE timepoints SET schedule_version = 'conquer_default@1'"))
    session.commit()
    return enrolled.patient


def test_check_command_reports_a_schedule_file_that_is_not_the_version_in_force(app, acme_gateway, upgraded, now):
    runner = app.test_cli_runner()
    app.config.update(SAFE | {"DATABASE_URL": app.config["DATABASE_URL"]})
    result = runner.invoke(args=["check"])
    assert result.exit_code == 1, result.output
    assert (
        "ERROR   SCHEDULE_FILE: is conquer_default@2, but the database was planned with conquer_default@1"
        in result.output
    )
    assert "qol schedule apply" in result.output
    app.config["ENV"] = "development"
    result = runner.invoke(args=["check"])
    assert result.exit_code == 0 and "WARNING SCHEDULE_FILE: is conquer_default@2" in result.output

    # Applied from an effective date: the file is the version in force, and the check is quiet.
    schedule = timepoints.configured_schedule(app.config)
    schedules.apply(
        db.session, Actor.system("cli"), schedule, now.date(), now, source=schedule.source or "conquer.yaml"
    )
    db.session.commit()
    app.config["ENV"] = "production"
    result = runner.invoke(args=["check"])
    assert result.exit_code == 0, result.output
    assert "ok      SCHEDULE_FILE: conquer_default@2, the version in force" in result.output


def test_readyz_fails_when_the_schedule_file_is_not_the_version_in_force(client, session, upgraded, now):
    heartbeat.beat(session, now - dt.timedelta(minutes=2))
    session.commit()
    response = client.get("/readyz")
    assert response.status_code == 503
    check = response.json["checks"]["schedule"]
    assert check["ok"] is False
    assert check["detail"] == (
        "configured conquer_default@2, in force conquer_default@1: run qol schedule apply <file> --effective DATE"
    )
    assert all(response.json["checks"][name]["ok"] for name in ("database", "migrations", "scheduler"))


def test_the_scheduler_replans_nothing_under_a_schedule_drift_and_says_so(app, session, upgraded, now, caplog):
    """Without an amendment, planning with the new file would rewrite the past: the sweep's
    reconcile refuses (logged, in the heartbeat's error); statuses still move."""
    before = {
        tp.key: (tp.target_date, tp.status)
        for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == upgraded.id))
    }
    with caplog.at_level(logging.ERROR, logger="qol_app.scheduler"):
        report = run_sweep(app, now + dt.timedelta(days=10), channels={})
    message = "The schedule in force is conquer_default@1, but the configured schedule file is conquer_default@2."
    assert any(message in error for error in report.errors), report.errors
    assert message in caplog.text
    assert "statuses" in report.steps
    session.expire_all()
    after = {
        tp.key: (tp.target_date, tp.status)
        for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == upgraded.id))
    }
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    assert heartbeat.status(session, now + dt.timedelta(days=10), 30).last_error
