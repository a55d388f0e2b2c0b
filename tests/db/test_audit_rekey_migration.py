"""Upgrading a database that holds events of the old unkeyed chain: they are re-anchored, explicitly.

Migration i18a numbers the old events 1..N, re-hashes them with the key and appends one
``audit_rekeyed`` event recording the old head and whether the old chain was intact; the result
verifies with the app's own ``verify``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid

import pytest
from alembic import command
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from qol_app.migrations import alembic_config
from qol_app.models import AuditEvent
from qol_app.services import audit
from tests.conftest import _PG_PROBLEM, AUDIT_KEY, PG_ADMIN_URL

T = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
LEGACY = (
    "occurred_at",
    "actor_type",
    "actor_id",
    "action",
    "entity_type",
    "entity_id",
    "patient_id",
    "site_id",
    "old",
    "new",
    "reason",
    "request_id",
)


def _legacy_hash(prev: str, fields: dict) -> str:
    """The chain of revision 0002: SHA-256 without a key, ``note`` not covered."""
    fields = {name: fields[name] for name in LEGACY} | {"occurred_at": fields["occurred_at"].isoformat()}
    payload = json.dumps({"prev": prev, **fields}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request, tmp_path):
    """A database at revision 0002 (the unkeyed chain)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
        admin = None
    else:
        if _PG_PROBLEM is not None:
            if os.environ.get("QOL_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"PostgreSQL is required but unreachable: {_PG_PROBLEM}")
            pytest.skip(f"PostgreSQL not reachable: {_PG_PROBLEM}")
        name = f"qol_rekey_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    command.upgrade(alembic_config(url), "0002")
    engine = create_engine(url)
    yield url, engine
    engine.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _write_legacy(engine, ids, *, tamper_reason: bool = False) -> str:
    prev = audit.GENESIS
    with engine.begin() as conn:
        for n, event_id in enumerate(ids):
            fields = {
                "occurred_at": T + dt.timedelta(minutes=n),
                "actor_type": "system",
                "actor_id": "demo",
                "action": "enroll",
                "entity_type": "patients",
                "entity_id": str(n),
                "patient_id": n,
                "site_id": 1,
                "old": None,
                "new": {"arm": "AB"[n % 2]},
                "reason": None,
                "request_id": None,
            }
            digest = _legacy_hash(prev, fields)
            row = fields | {"id": event_id, "prev_hash": prev, "hash": digest, "note": None}
            if tamper_reason and n == 1:
                row["reason"] = "edited afterwards"
            conn.execute(AuditEvent.__table__.insert().values(**row))
            prev = digest
        conn.execute(
            text("INSERT INTO audit_chain_head (id, last_hash, count) VALUES (1, :h, :c)"), {"h": prev, "c": len(ids)}
        )
    return prev


def _verify(engine):
    with Session(engine, info=audit.session_info(AUDIT_KEY)) as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        return audit.verify(session), events


def test_old_events_are_rekeyed_and_anchored(old_database):
    url, engine = old_database
    ids = [1, 2, 5, 6] if engine.dialect.name == "postgresql" else [1, 2, 3, 4]  # PostgreSQL ids may have gaps
    old_head = _write_legacy(engine, ids)
    command.upgrade(alembic_config(url, audit_key=AUDIT_KEY), "head")
    problems, events = _verify(engine)
    assert problems == []
    assert [e.id for e in events] == [1, 2, 3, 4, 5]
    anchor = events[-1]
    assert anchor.action == "audit_rekeyed" and anchor.actor_id == "migration"
    assert anchor.old == {"events": 4, "head_count": 4, "head_hash": old_head}
    assert anchor.new["legacy_intact"] is True and anchor.new["renumbered"] is (ids != [1, 2, 3, 4])
    assert [e.new for e in events[:4]] == [{"arm": "A"}, {"arm": "B"}, {"arm": "A"}, {"arm": "B"}]


def test_a_damaged_old_chain_is_recorded_not_hidden(old_database):
    url, engine = old_database
    _write_legacy(engine, [1, 2, 3], tamper_reason=True)
    command.upgrade(alembic_config(url, audit_key=AUDIT_KEY), "head")
    problems, events = _verify(engine)
    assert problems == []  # the new chain is sound...
    assert events[-1].new["legacy_intact"] is False  # ...and says the old one was not
    assert events[-1].new["legacy_problems"] == ["event 2: contents do not match its hash"]


def test_old_events_need_the_key(old_database):
    url, engine = old_database
    _write_legacy(engine, [1])
    with pytest.raises(RuntimeError, match="qol db upgrade"):
        command.upgrade(alembic_config(url), "head")
