"""The audit trail: hash chain, verification, tamper detection, append-only on PostgreSQL."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from qol_app.models import AuditEvent
from qol_app.services import audit


def _events(session):
    return session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()


def test_enrolment_writes_chained_events(factory, session):
    factory.patient()
    factory.patient()
    events = _events(session)
    assert [e.action for e in events] == ["enroll", "enroll"]
    assert events[0].prev_hash == audit.GENESIS
    assert events[1].prev_hash == events[0].hash
    assert events[0].new["arm"] == "A" and events[0].actor_type == "system"
    assert audit.verify(session) == []


def test_verify_cli_reports_intact(app, factory, session):
    factory.patient()
    session.commit()
    result = CliRunner().invoke(app.cli, ["audit", "verify"], obj=None, standalone_mode=False)
    assert result.exception is None, result.output
    assert "intact" in result.output


def _tamper(session, sql, **params):
    """Change rows behind the app's back, the way an attacker with DB access would."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL session_replication_role = replica"))
    session.execute(text(sql), params)
    session.expire_all()


def test_edited_row_is_detected(factory, session):
    factory.patient()
    factory.patient()
    first = _events(session)[0]
    _tamper(session, "UPDATE audit_events SET reason = 'edited' WHERE id = :id", id=first.id)
    messages = [p.message for p in audit.verify(session)]
    assert any(f"event {first.id}: contents do not match" in m for m in messages)


def test_deleted_row_is_detected(factory, session):
    for _ in range(3):
        factory.patient()
    middle = _events(session)[1]
    _tamper(session, "DELETE FROM audit_events WHERE id = :id", id=middle.id)
    messages = [p.message for p in audit.verify(session)]
    assert any("link broken" in m for m in messages)


def test_deleted_newest_row_is_detected(factory, session):
    factory.patient()
    factory.patient()
    last = _events(session)[-1]
    _tamper(session, "DELETE FROM audit_events WHERE id = :id", id=last.id)
    assert any("newest events are missing" in p.message for p in audit.verify(session))


def test_postgresql_refuses_update_and_delete(factory, session):
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's; SQLite relies on verify")
    factory.patient()
    event_id = _events(session)[0].id
    with pytest.raises(DBAPIError, match="append-only"):
        with session.begin_nested():
            session.execute(update(AuditEvent).where(AuditEvent.id == event_id).values(reason="x"))
    with pytest.raises(DBAPIError, match="append-only"):
        with session.begin_nested():
            session.execute(text("DELETE FROM audit_events"))
    assert audit.verify(session) == []
