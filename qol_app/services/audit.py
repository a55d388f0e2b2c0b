"""Append-only audit trail with a SHA-256 hash chain.

Every change to patient data, events, responses, answers and statuses goes through
``record``, inside the same transaction as the change itself, so the trail can never say
something happened that was rolled back (or miss something that was committed).

Appending locks the single chain-head row until commit. On PostgreSQL every writing transaction
takes that lock before its first row lock (:func:`lock_head_first`), so there is one lock order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import json
import re
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.engine.interfaces import DBAPICursor, ExecutionContext
from sqlalchemy.event import listen
from sqlalchemy.orm import Session

from qol_app.models.audit import AuditChainHead, AuditEvent

GENESIS = "0" * 64


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who did it: a staff user, a patient (by internal id) or the system (scheduler, CLI)."""

    type: str
    id: str | None = None
    request_id: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls("system", name)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"cannot record {type(value).__name__} in the audit trail")


def jsonable(value: Any) -> Any:
    """Reduce values to JSON types in one canonical form, so the stored row hashes the same.

    A round trip through the C JSON encoder: instants become UTC ISO strings, dates ISO dates,
    sets sorted lists, tuples lists and keys strings — much faster than walking it in Python.
    """
    if value is None:
        return None
    return json.loads(json.dumps(value, default=_json_default, ensure_ascii=False))


def _digest(prev_hash: str, fields: dict[str, Any]) -> str:
    payload = json.dumps({"prev": prev_hash, **fields}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


#: The columns an event's hash covers (with the previous hash).
HASHED = (
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


def _fields(values: Mapping[str, Any]) -> dict[str, Any]:
    fields = {name: values[name] for name in HASHED}
    fields["occurred_at"] = fields["occurred_at"].astimezone(dt.UTC).isoformat()
    return fields


def _event_fields(event: AuditEvent) -> dict[str, Any]:
    return _fields({name: getattr(event, name) for name in HASHED})


_HEAD = AuditChainHead.__table__
_EVENTS = AuditEvent.__table__
#: Core statements: appending runs inside every write request, and the ORM unit of work for an
#: insert-only row costs several times the SQL itself.
_ADVANCE = update(_HEAD).where(_HEAD.c.id == 1).values(count=_HEAD.c.count + 1).returning(_HEAD.c.last_hash)
_SET_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(last_hash=bindparam("new_hash"))
_APPEND = insert(_EVENTS)


def _advance_head(conn: Connection) -> str:
    """Lock the chain head and return the newest hash (creating the head on first use)."""
    prev = conn.execute(_ADVANCE).scalar_one_or_none()
    if prev is None:
        conn.execute(insert(_HEAD).values(id=1, last_hash=GENESIS, count=1))
        prev = GENESIS
    return prev


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity: Any = None,
    *,
    entity_type: str | None = None,
    entity_id: Any = None,
    patient_id: int | None = None,
    site_id: int | None = None,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
    reason: str | None = None,
    now: dt.datetime,
) -> AuditEvent:
    """Append one audit event in the caller's transaction; returns it (detached, with its id).

    Pending changes are flushed first, so the event follows what it describes. The chain head
    stays locked until the caller commits; on PostgreSQL the transaction already took that lock
    before its first write (:func:`lock_head_first`), which is what keeps a transaction that
    records several events from deadlocking with one that locked a row they touch.
    """
    session.flush()
    if entity is not None:
        entity_type = entity_type or entity.__tablename__
        if entity_id is None:
            entity_id = getattr(entity, "id", None)
    conn = session.connection()
    values: dict[str, Any] = {
        "occurred_at": now,
        "actor_type": actor.type,
        "actor_id": actor.id,
        "action": action,
        "entity_type": entity_type or "unknown",
        "entity_id": None if entity_id is None else str(entity_id),
        "patient_id": patient_id,
        "site_id": site_id,
        "old": jsonable(old),
        "new": jsonable(new),
        "reason": reason,
        "request_id": actor.request_id,
    }
    values["prev_hash"] = _advance_head(conn)
    values["hash"] = _digest(values["prev_hash"], _fields(values))
    values["id"] = conn.execute(_APPEND, values).inserted_primary_key[0]
    conn.execute(_SET_HEAD, {"new_hash": values["hash"]})
    return AuditEvent(**values)


# ---- one lock order: the chain head before any row --------------------------------------------
#: Statements that take row locks: DML (also as a writable CTE) and SELECT ... FOR UPDATE/SHARE.
_TAKES_ROW_LOCKS = re.compile(
    r"(^|\()\s*(INSERT|UPDATE|DELETE|MERGE)\b|\bFOR\s+(UPDATE|NO\s+KEY\s+UPDATE|SHARE|KEY\s+SHARE)\b", re.IGNORECASE
)
_LOCK_HEAD = "SELECT 1 FROM audit_chain_head WHERE id = 1 FOR UPDATE"
_CREATE_HEAD = (
    f"INSERT INTO audit_chain_head (id, last_hash, count) VALUES (1, '{GENESIS}', 0) ON CONFLICT (id) DO NOTHING"
)
#: Key in the DBAPI connection's ``info``: (a weak reference to) the root transaction holding the head.
_HEAD_HELD_BY = "qol_audit_head_held_by"


def lock_head_first(engine: Engine) -> None:
    """Make every transaction on ``engine`` lock the chain head before it takes any row lock.

    Why: ``record`` holds the head until commit, so a transaction recording twice (a sweep
    batch: row A, event, row B, event) holds the head while it waits for B, and one that locked
    B first (a patient's submission, a nurse's event) waits for the head: PostgreSQL aborts one
    (40P01). Head first is then the one lock order, and writers queue instead. It applies to
    every writer, audited or not (login-session touches too): at the first write nobody knows
    whether an event follows, and a writer holding rows without the head can still close a
    cycle. Reads lock nothing and never wait here.

    PostgreSQL only (``make_engine`` installs it; a SQLite writer locks the whole database).
    A missing head row is created (count 0) so there is something to lock. ROLLBACK TO
    SAVEPOINT releases locks taken inside, so the next write locks again. Alembic migrates on
    an engine of its own, without this hook.
    """
    listen(engine, "before_cursor_execute", _take_head_first)
    listen(engine, "rollback_savepoint", _forget_head)


def _take_head_first(
    conn: Connection,
    cursor: DBAPICursor,
    statement: str,
    parameters: Any,
    context: ExecutionContext | None,
    executemany: bool,
) -> None:
    """``before_cursor_execute``: lock the head before the transaction's first row-locking statement."""
    transaction = conn.get_transaction()
    held = conn.info.get(_HEAD_HELD_BY)
    if transaction is None or (held is not None and held() is transaction):
        return
    if not _TAKES_ROW_LOCKS.search(statement):
        return
    if "audit_chain_head" in statement:  # ``record`` (or anyone) locking the head itself: first anyway
        conn.info[_HEAD_HELD_BY] = weakref.ref(transaction)
        return
    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is None or getattr(dbapi_connection, "autocommit", False):
        return  # each statement is its own transaction: nothing to order
    lock = dbapi_connection.cursor()
    try:
        lock.execute(_LOCK_HEAD)
        if lock.fetchone() is None:
            lock.execute(_CREATE_HEAD)
            lock.execute(_LOCK_HEAD)
    finally:
        lock.close()
    conn.info[_HEAD_HELD_BY] = weakref.ref(transaction)  # the next transaction is a new object: locks again


def _forget_head(conn: Connection, name: str, context: Any) -> None:
    conn.info.pop(_HEAD_HELD_BY, None)


def changes(obj: Any, fields: list[str], new_values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (old, new) dicts of the fields whose value actually changes."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for name in fields:
        if name in new_values and getattr(obj, name) != new_values[name]:
            old[name] = getattr(obj, name)
            new[name] = new_values[name]
    return old, new


@dataclasses.dataclass(frozen=True)
class Problem:
    event_id: int | None
    message: str


def verify(session: Session, batch: int = 5000) -> list[Problem]:
    """Recompute the chain; report edited rows, broken links (deleted rows) and a cut tail."""
    problems: list[Problem] = []
    prev_hash = GENESIS
    count = 0
    for event in _iter_events(session, batch):
        count += 1
        if event.prev_hash != prev_hash:
            problems.append(
                Problem(event.id, f"event {event.id}: link broken (a row before it was deleted or altered)")
            )
        if _digest(event.prev_hash, _event_fields(event)) != event.hash:
            problems.append(Problem(event.id, f"event {event.id}: contents do not match its hash (edited)"))
        prev_hash = event.hash
    head = session.get(AuditChainHead, 1)
    if head is not None:
        if head.last_hash != prev_hash:
            problems.append(Problem(None, "the newest events are missing (chain head does not match the last row)"))
        if head.count != count:
            problems.append(Problem(None, f"chain head counts {head.count} events but {count} are stored"))
    elif count:
        problems.append(Problem(None, "events exist but the chain head is missing"))
    return problems


def _iter_events(session: Session, batch: int) -> Iterator[AuditEvent]:
    last_id = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id
        session.expunge_all()
