"""PostgreSQL: the app's own role (``qol db create-app-role``) is neither owner nor superuser.

With that role's credentials nobody can edit, delete or truncate audit rows, move the chain
head, disable or drop the append-only trigger, or replace the append functions; a correctly
chained event appended through the function without the key is caught by ``verify``. And the
app works under that role: a day of patient and staff work runs on its grants alone.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session

from qol_app import create_app
from qol_app.db import db
from qol_app.models import AuditChainHead, AuditEvent, Response
from qol_app.services import audit
from tests.conftest import AUDIT_KEY, _config, wipe
from tests.factories import Factory, fill_form, isolated_client, login, sign_in, submit_form

T = dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC)


@pytest.fixture
def app_role(database_url, engine, tmp_path):
    """A fresh role made by the CLI (as the owner), and an engine that connects as it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("database roles are PostgreSQL's")
    role = f"qol_app_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    owner_app = create_app(_config(database_url, tmp_path))
    result = owner_app.test_cli_runner().invoke(args=["db", "create-app-role", role])
    owner_app.extensions["qol_db"]["engine"].dispose()
    assert result.exit_code == 0, result.output
    assert "not owner, not superuser" in result.output
    url = make_url(database_url).set(username=role).render_as_string(hide_password=False)
    as_role = create_engine(url)
    yield role, url, as_role
    as_role.dispose()
    wipe(engine)
    with engine.begin() as conn:
        conn.execute(text(f'DROP OWNED BY "{role}"'))
        conn.execute(text(f'DROP ROLE "{role}"'))


def test_the_role_is_neither_owner_nor_superuser(engine, app_role):
    role, _url, as_role = app_role
    with engine.connect() as conn:
        attrs = conn.execute(
            text("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = :r"),
            {"r": role},
        ).one()
        owned = conn.execute(text("SELECT count(*) FROM pg_tables WHERE tableowner = :r"), {"r": role}).scalar()
    assert tuple(attrs) == (False, False, False, False) and owned == 0


#: What an attacker holding the app's credentials tries against the trail; each must be refused.
ATTACKS = {
    "edit an event": "UPDATE audit_events SET reason = 'x'",
    "delete events": "DELETE FROM audit_events",
    "truncate": "TRUNCATE audit_events",
    "insert an event": (
        "INSERT INTO audit_events (id, occurred_at, actor_type, action, entity_type, prev_hash, hash) "
        "VALUES (999, now(), 'staff', 'x', 'x', 'x', 'x')"
    ),
    "move the head": "UPDATE audit_chain_head SET count = 0",
    "delete the head": "DELETE FROM audit_chain_head",
    "lock the head directly": "SELECT 1 FROM audit_chain_head FOR UPDATE",
    "disable the trigger": "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete",
    "drop the trigger": "DROP TRIGGER audit_events_no_update_delete ON audit_events",
    "skip triggers": "SET session_replication_role = replica",
    "replace the append function": (
        "CREATE OR REPLACE FUNCTION audit_lock_head(OUT head_count integer, OUT head_hash text) "
        "LANGUAGE sql AS $$ SELECT 0, '' $$"
    ),
    "a function of its own": "CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "rename the table": "ALTER TABLE audit_events RENAME TO old_events",
    "a trigger of its own": (
        "CREATE TRIGGER t BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_app_role_cannot_touch_the_trail(engine, app_role, attack):
    _role, _url, as_role = app_role
    with Session(engine, info=audit.session_info(AUDIT_KEY)) as owner:
        audit.record(owner, audit.Actor.system("t"), "setup", entity_type="t", now=T)
        owner.commit()
    with as_role.connect() as conn, pytest.raises((ProgrammingError, DBAPIError)) as caught:
        conn.execute(text(ATTACKS[attack]))
    message = str(caught.value.orig).lower()
    assert "permission denied" in message or "must be owner" in message, message
    with Session(engine, info=audit.session_info(AUDIT_KEY)) as owner:
        assert owner.scalar(select(AuditChainHead.count)) == 1
        assert audit.verify(owner) == []


def test_a_forged_append_through_the_function_is_caught(engine, app_role):
    """The app's credentials can call audit_append, correctly chained: without the key the hash is wrong."""
    _role, _url, as_role = app_role
    with Session(as_role, info=audit.session_info(AUDIT_KEY)) as app_session:
        audit.record(app_session, audit.Actor.system("t"), "genuine", entity_type="t", now=T)
        app_session.commit()
        made, _ = audit.checkpoint(app_session, T)
    with Session(as_role, info=audit.session_info("the attacker's guess")) as forger:
        audit.record(forger, audit.Actor("staff", "1"), "forged", entity_type="patient", now=T)
        forger.commit()
    with Session(as_role, info=audit.session_info(AUDIT_KEY)) as checker:
        messages = [p.message for p in audit.verify(checker, checkpoints=[made])]
    assert any("event 2: contents do not match its keyed hash" in m for m in messages)
    assert any("chain head was changed without the audit key" in m for m in messages)


def test_the_function_keeps_the_head_consistent(app_role):
    """Even the function refuses an event that does not follow the head (a replayed or skipped id)."""
    _role, _url, as_role = app_role
    with as_role.connect() as conn, pytest.raises(DBAPIError, match="does not follow the chain head"):
        conn.execute(
            text(
                "SELECT audit_append(5, :prev, 'h', 'm', now(), 'staff', '1', 'x', 'x', NULL, NULL, NULL, "
                "NULL, NULL, NULL, NULL, NULL)"
            ),
            {"prev": audit.GENESIS},
        )


def test_running_the_command_again_is_harmless(database_url, engine, app_role, tmp_path):
    role, _url, _as_role = app_role
    owner_app = create_app(_config(database_url, tmp_path))
    runner = owner_app.test_cli_runner()
    again = runner.invoke(args=["db", "create-app-role", role])
    assert again.exit_code == 0 and f"role {role} updated" in again.output
    with engine.connect() as conn:
        me = conn.execute(text("SELECT current_user")).scalar()
    refused = runner.invoke(args=["db", "create-app-role", me])
    assert refused.exit_code != 0 and "owner" in refused.output
    owner_app.extensions["qol_db"]["engine"].dispose()


@pytest.fixture
def role_app(app_role, tmp_path, monkeypatch):
    """The web app connected as the app role (really committing), with test-sized Argon2."""
    from argon2 import PasswordHasher

    for name in ("_hasher", "_pin_hasher"):
        monkeypatch.setattr(f"qol_app.passwords.{name}", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    _role, url, _as_role = app_role
    application = create_app(_config(url, tmp_path))
    application.config["WTF_CSRF_ENABLED"] = False
    with application.app_context():
        yield application
    application.extensions["qol_db"]["engine"].dispose()


def test_a_day_of_work_runs_on_the_app_roles_grants(role_app):
    """Enrol, record a cycle, a patient answers and sends, a nurse enters a status; audited and intact."""
    from qol_app.scheduler.jobs import run_sweep
    from qol_app.services import treatment_events

    factory = Factory(db.session, T)
    site = factory.site()
    nurse = factory.staff("nurse", sites=[site])
    enrolled = factory.patient(site, pin="123456", language="en", randomization_date=T.date())
    treatment_events.record_event(
        db.session, audit.Actor("staff", str(nurse.id)), enrolled.patient, kind="systemic_cycle", date=T.date(), now=T
    )
    tp = factory.timepoint(enrolled, instruments=("eq5d5l",), respondent="self")
    db.session.commit()

    patient_client = isolated_client(role_app)
    assert sign_in(patient_client, enrolled.token).status_code == 302
    review = fill_form(patient_client, tp.id, "eq5d5l", {"mo": 1, "sc": 1, "ua": 2, "pd": 1, "ad": 1, "vas": 80})
    assert submit_form(patient_client, review).status_code == 302

    staff_client = isolated_client(role_app)
    login(staff_client, nurse)
    assert staff_client.get(f"/staff/patients/{enrolled.patient.id}").status_code == 200
    changed = staff_client.post(
        f"/staff/patients/{enrolled.patient.id}/status", data={"status": "lost", "date": "2026-03-10", "reason": "r"}
    )
    assert changed.status_code == 302
    assert run_sweep(role_app, T + dt.timedelta(days=1), channels={}).ok

    db.session.expire_all()
    assert db.session.scalar(select(Response.status).where(Response.timepoint_id == tp.id)) == "submitted"
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"enroll", "record_event", "sign_in", "submit_response", "set_status"} <= actions
    assert audit.verify(db.session) == []
