"""The audit trail: keyed hash chain over every column, verification, the CLI, append-only on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from qol_app.models import AuditChainHead, AuditEvent
from qol_app.services import audit
from tests.factories import tamper


def _events(session):
    return session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()


def test_enrolment_writes_chained_keyed_events(factory, session):
    factory.patient()
    factory.patient()
    events = _events(session)
    assert [e.action for e in events] == ["enroll", "enroll"]
    assert [e.id for e in events] == [1, 2]  # the id is the position in the chain
    assert events[0].prev_hash == audit.GENESIS
    assert events[1].prev_hash == events[0].hash
    assert events[0].new["arm"] == "A" and events[0].actor_type == "system"
    head = session.get(AuditChainHead, 1)
    assert (head.count, head.last_hash) == (2, events[1].hash)
    assert audit.verify(session) == []


def test_every_column_but_the_hash_is_covered():
    columns = {c.name for c in AuditEvent.__table__.columns}
    assert set(audit.HASHED) == columns - {"hash"}


def test_the_hash_needs_the_key(factory, session):
    """Recomputing an event's hash without the key (plain SHA-256, or another key) gives another value."""
    import hashlib

    factory.patient()
    event = _events(session)[0]
    values = {name: getattr(event, name) for name in audit.HASHED}
    assert audit.event_mac(b"another key", values) != event.hash
    assert hashlib.sha256(audit._canonical({"format": 2, "event": values | {"occurred_at": ""}})).hexdigest() != (
        event.hash
    )


def test_a_session_without_the_key_cannot_append(app, session):
    from sqlalchemy.orm import Session

    with Session(bind=session.connection()) as keyless, pytest.raises(audit.MissingKeyError):
        audit.record(keyless, audit.Actor.system("t"), "x", entity_type="t", now=dt.datetime.now(dt.UTC))


def test_verify_cli_reports_intact(app, factory, session):
    factory.patient()
    session.commit()
    result = CliRunner().invoke(app.cli, ["audit", "verify"], obj=None, standalone_mode=False)
    assert result.exception is None, result.output
    assert "intact" in result.output


#: Another value for each column (by name), as an attacker would write it.
EDITS = {
    "id": "id + 100",
    "occurred_at": "occurred_at",  # replaced below per backend
    "actor_type": "'staff'",
    "actor_id": "'999'",
    "action": "'nothing_happened'",
    "entity_type": "'other'",
    "entity_id": "'0'",
    "patient_id": "424242",
    "site_id": "424242",
    "old": None,
    "new": None,
    "reason": "'edited'",
    "request_id": "'forged'",
    "prev_hash": "'" + "1" * 64 + "'",
    "note": "'a note added later'",
}


@pytest.mark.parametrize("column", audit.HASHED)
def test_an_edit_of_any_column_is_detected(factory, session, column):
    factory.patient()
    factory.patient()
    first = _events(session)[0]
    if column in ("old", "new"):
        value = "'" + json.dumps({"arm": "B"}) + "'"
        value = f"CAST({value} AS json)" if session.get_bind().dialect.name == "postgresql" else value
    elif column == "occurred_at":
        value = (
            "occurred_at + interval '1 second'"
            if session.get_bind().dialect.name == "postgresql"
            else "datetime(occurred_at, '+1 second')"
        )
    else:
        value = EDITS[column]
    tamper(session, f"UPDATE audit_events SET {column} = {value} WHERE id = :id", id=first.id)
    problems = audit.verify(session)
    assert problems, f"an edit of {column} went unnoticed"


def test_deleted_row_is_detected(factory, session):
    for _ in range(3):
        factory.patient()
    middle = _events(session)[1].id
    tamper(session, "DELETE FROM audit_events WHERE id = :id", id=middle)
    messages = [p.message for p in audit.verify(session)]
    assert any(f"event {middle} missing (deleted)" in m for m in messages)


def test_deleted_newest_row_is_detected(factory, session):
    factory.patient()
    factory.patient()
    last = _events(session)[-1]
    tamper(session, "DELETE FROM audit_events WHERE id = :id", id=last.id)
    assert any("newest events are missing" in p.message for p in audit.verify(session))


def test_a_wrong_key_is_named_as_the_likely_cause(factory, session):
    factory.patient()
    session.info[audit.AUDIT_KEY_INFO] = b"not the key"
    messages = [p.message for p in audit.verify(session)]
    assert any("is AUDIT_KEY the key" in m for m in messages)


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
