"""Append-only audit trail: a keyed (HMAC-SHA256) hash chain, anchored outside the database.

Every change to patient data, events, responses, answers and statuses goes through
``record``, inside the same transaction as the change itself, so the trail can never say
something happened that was rolled back (or miss something that was committed).

The chain:

* An event's id is its position in the chain (1, 2, 3, ...), assigned under the head lock.
* Its ``hash`` is an HMAC over every column (:data:`HASHED`: the id, the previous event's hash,
  ``note`` included) with a key that is never stored in the database (the ``AUDIT_KEY``
  setting, carried by the session: :func:`session_info`). Whoever has only the database can
  delete or edit rows, but cannot write one that verifies.
* The head row holds the count and newest hash, with an HMAC of its own, so cutting the tail and
  "fixing" the head is detected too.
* What no database check can see (everything deleted, or the database rolled back to an older
  copy) is caught by a checkpoint kept outside it: :func:`checkpoint` signs the head (count,
  hash, time) and :func:`verify` compares the trail with any checkpoints given.

On PostgreSQL the application's role cannot write the audit tables at all: it appends through
``audit_lock_head()`` and ``audit_append(...)``, SECURITY DEFINER functions owned by the
migration role (``qol db create-app-role`` sets the role up), and a trigger refuses UPDATE,
DELETE and TRUNCATE. Appending locks the single head row until commit; on PostgreSQL every
writing transaction takes that lock before its first row lock (:func:`qol_app.db.lock_head_first`), so
there is one lock order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from qol_app.db import AUDIT_KEY_INFO, GENESIS, UTCDateTime
from qol_app.models.audit import AuditChainHead, AuditEvent


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


#: The columns an event's keyed hash covers: every column but the hash itself (a test checks
#: this against the table, so a new column is a conscious decision, not a silent gap).
HASHED = (
    "id",
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
    "prev_hash",
    "note",
)
#: Version of the hashed payload; part of every digest, so a payload format change cannot be
#: mistaken for an edit (or pass as the old one).
FORMAT = 2


class MissingKeyError(RuntimeError):
    """The session carries no audit key (see :func:`session_info`)."""


def session_info(key: str | bytes) -> dict[str, bytes]:
    """``Session(info=...)`` for a session that writes or verifies audit events with ``key``.

    The key never goes into the database: it is the application's setting (``AUDIT_KEY``),
    handed to each session by ``qol_app.db``; code building its own sessions passes it here.
    """
    if isinstance(key, str):
        key = key.encode()
    if not key:
        raise MissingKeyError("the audit key is empty")
    return {AUDIT_KEY_INFO: key}


def _key(session: Session) -> bytes:
    key = session.info.get(AUDIT_KEY_INFO)
    if not key:
        raise MissingKeyError(
            "this database session has no audit key: create sessions through qol_app.db, or pass "
            "info=audit.session_info(key) (the key is the AUDIT_KEY setting, never stored in the database)"
        )
    return key


def _canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def event_mac(key: bytes, values: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over every hashed column of one event (``values`` holds them by name)."""
    fields = {name: values[name] for name in HASHED}
    fields["occurred_at"] = fields["occurred_at"].astimezone(dt.UTC).isoformat()
    return hmac.new(key, _canonical({"format": FORMAT, "event": fields}), hashlib.sha256).hexdigest()


def head_mac(key: bytes, count: int, last_hash: str) -> str:
    """HMAC of the chain head, so its count and newest hash cannot be set without the key."""
    payload = {"format": FORMAT, "head": {"count": count, "last_hash": last_hash}}
    return hmac.new(key, _canonical(payload), hashlib.sha256).hexdigest()


_HEAD = AuditChainHead.__table__
_EVENTS = AuditEvent.__table__
#: Core statements: appending runs inside every write request, and the ORM unit of work for an
#: insert-only row costs several times the SQL itself.
#: SQLite: a no-op UPDATE takes the database's write lock before the head is read.
_TOUCH_HEAD = (
    update(_HEAD).where(_HEAD.c.id == 1).values(count=_HEAD.c.count).returning(_HEAD.c.count, _HEAD.c.last_hash)
)
_SET_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(count=bindparam("new_count"), last_hash=bindparam("new_hash"), mac=bindparam("new_mac"))
)
_APPEND = insert(_EVENTS)
#: PostgreSQL: the application's role may not write the audit tables; it appends through these
#: two SECURITY DEFINER functions (migration i18a), which keep the head and the rows consistent.
_PG_LOCK_HEAD = text("SELECT head_count, head_hash FROM audit_lock_head()")
_PG_APPEND = text(
    "SELECT audit_append(CAST(:id AS integer), CAST(:prev_hash AS text), CAST(:hash AS text), "
    "CAST(:head_mac AS text), CAST(:occurred_at AS timestamptz), CAST(:actor_type AS text), "
    "CAST(:actor_id AS text), CAST(:action AS text), CAST(:entity_type AS text), CAST(:entity_id AS text), "
    "CAST(:patient_id AS integer), CAST(:site_id AS integer), CAST(:old AS json), CAST(:new AS json), "
    "CAST(:reason AS text), CAST(:request_id AS text), CAST(:note AS text))"
).bindparams(bindparam("occurred_at", type_=UTCDateTime()))


def _append(conn: Connection, key: bytes, values: dict[str, Any]) -> None:
    """Lock the head, give the event the next position as its id, hash it and append it."""
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        count, prev = conn.execute(_PG_LOCK_HEAD).one()
    else:
        row = conn.execute(_TOUCH_HEAD).first()
        if row is None:
            conn.execute(insert(_HEAD).values(id=1, last_hash=GENESIS, count=0, mac=None))
            count, prev = 0, GENESIS
        else:
            count, prev = row
    values["id"] = count + 1
    values["prev_hash"] = prev
    values["hash"] = event_mac(key, values)
    new_head_mac = head_mac(key, values["id"], values["hash"])
    if postgresql:
        params = dict(values, head_mac=new_head_mac)
        params["old"] = None if values["old"] is None else json.dumps(values["old"], ensure_ascii=False)
        params["new"] = None if values["new"] is None else json.dumps(values["new"], ensure_ascii=False)
        conn.execute(_PG_APPEND, params)
    else:
        conn.execute(_APPEND, values)
        conn.execute(_SET_HEAD, {"new_count": values["id"], "new_hash": values["hash"], "new_mac": new_head_mac})


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
    note: str | None = None,
    now: dt.datetime,
) -> AuditEvent:
    """Append one audit event in the caller's transaction; returns it (detached, with its id).

    Pending changes are flushed first, so the event follows what it describes. The chain head
    stays locked until the caller commits; on PostgreSQL the transaction already took that lock
    before its first write (:func:`qol_app.db.lock_head_first`), which is what keeps a transaction that
    records several events from deadlocking with one that locked a row they touch.
    """
    session.flush()
    if entity is not None:
        entity_type = entity_type or entity.__tablename__
        if entity_id is None:
            entity_id = getattr(entity, "id", None)
    key = _key(session)
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
        "note": note,
    }
    _append(conn, key, values)
    return AuditEvent(**values)


#: Audit actions that record a read of the data (an export, its download), not a change of it.
READ_ACTIONS = ("export", "export_download")


def head_at(session: Session, as_of: dt.datetime) -> dict[str, Any] | None:
    """The audit chain head at ``as_of`` for an export manifest: the newest event that happened by
    then, other than the records of reads (:data:`READ_ACTIONS`, e.g. the previous export of the
    same as-of time): its position in the chain, its hash and time. None before the first event.
    A verifier finds the event by position and checks its hash; every change after ``as_of``
    comes after it in the chain."""
    row = session.execute(
        select(AuditEvent.id, AuditEvent.hash, AuditEvent.occurred_at)
        .where(AuditEvent.occurred_at <= as_of, AuditEvent.action.not_in(READ_ACTIONS))
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return {"position": row.id, "hash": row.hash, "occurred_at": row.occurred_at.astimezone(dt.UTC).isoformat()}


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


# ---- checkpoints: the head, signed, kept outside the database -----------------------------------
CHECKPOINT_FORMAT = "qol-audit-checkpoint/1"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The chain head at one moment, signed with the audit key: ``count`` events, the newest
    being ``hash``. Kept outside the database (a file, the log, a printout for the monitor)."""

    count: int
    hash: str
    at: dt.datetime
    mac: str

    def _payload(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "count": self.count,
            "hash": self.hash,
            "at": self.at.astimezone(dt.UTC).isoformat(),
        }

    def to_json(self) -> str:
        return json.dumps(self._payload() | {"mac": self.mac}, sort_keys=True) + "\n"

    def summary(self) -> str:
        """One line a monitor can copy down by hand."""
        return (
            f"audit checkpoint {self.at.astimezone(dt.UTC).isoformat(timespec='seconds')}: "
            f"{self.count} events, newest {self.hash}, signature {self.mac}"
        )


def _checkpoint_mac(key: bytes, count: int, last_hash: str, at: dt.datetime) -> str:
    payload = Checkpoint(count, last_hash, at, "")._payload()
    return hmac.new(key, _canonical(payload), hashlib.sha256).hexdigest()


def checkpoint(session: Session, now: dt.datetime) -> tuple[Checkpoint | None, list[Problem]]:
    """Verify the trail and sign its head as of ``now``; (None, problems) when it does not verify.

    A checkpoint of a trail that already fails would vouch for the damage, so none is made then.
    """
    problems = verify(session)
    if problems:
        return None, problems
    head = session.get(AuditChainHead, 1, populate_existing=True)
    count, last_hash = (head.count, head.last_hash) if head is not None else (0, GENESIS)
    at = now.astimezone(dt.UTC)
    return Checkpoint(count, last_hash, at, _checkpoint_mac(_key(session), count, last_hash, at)), []


def read_checkpoint(session: Session, content: str) -> Checkpoint:
    """Parse a checkpoint written by :meth:`Checkpoint.to_json` and check its signature.

    ``ValueError`` for anything that is not a checkpoint signed with this session's key.
    """
    try:
        data = json.loads(content)
        if data.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not an audit checkpoint (format {data.get('format')!r})")
        cp = Checkpoint(int(data["count"]), str(data["hash"]), dt.datetime.fromisoformat(data["at"]), str(data["mac"]))
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"not an audit checkpoint ({type(exc).__name__}: {exc})") from None
    if cp.at.tzinfo is None:
        raise ValueError("not an audit checkpoint (its time has no timezone)")
    expected = _checkpoint_mac(_key(session), cp.count, cp.hash, cp.at)
    if not hmac.compare_digest(expected, cp.mac):
        raise ValueError("the checkpoint's signature does not match (altered, or signed with another key)")
    return cp


def verify(session: Session, *, checkpoints: Iterable[Checkpoint] = (), batch: int = 5000) -> list[Problem]:
    """Recompute the keyed chain; report every row that was edited, forged, deleted or cut off.

    Without checkpoints this finds edits (including ``note``), rows written without the key,
    gaps, broken links and a head that does not match the rows. Each checkpoint further proves
    that its first ``count`` events are still there, unchanged: that catches deleting the tail
    (or everything) and restoring an older copy of the database.
    """
    key = _key(session)
    problems: list[Problem] = []
    wanted = {cp.count: cp for cp in checkpoints if cp.count > 0}
    prev_hash, expected_id, bad = GENESIS, 1, 0
    for event in _iter_events(session, batch):
        if event.id != expected_id:
            missing = f"{expected_id}" if event.id == expected_id + 1 else f"{expected_id} to {event.id - 1}"
            problems.append(Problem(event.id, f"event {missing} missing (deleted) before event {event.id}"))
        elif event.prev_hash != prev_hash:
            problems.append(Problem(event.id, f"event {event.id}: link broken (the row before it was altered)"))
        if not hmac.compare_digest(event_mac(key, event._mapping), event.hash):
            bad += 1
            problems.append(
                Problem(event.id, f"event {event.id}: contents do not match its keyed hash (edited or forged)")
            )
        cp = wanted.pop(event.id, None)
        if cp is not None and cp.hash != event.hash:
            problems.append(
                Problem(
                    event.id, f"event {event.id} differs from the checkpoint of {_when(cp)} (the trail was rewritten)"
                )
            )
        prev_hash, expected_id = event.hash, event.id + 1
    count = expected_id - 1
    for cp in sorted(wanted.values(), key=lambda c: c.count):
        problems.append(
            Problem(
                None,
                f"the checkpoint of {_when(cp)} covers {cp.count} events, but only {count} are stored "
                "(events were deleted from the end)",
            )
        )
    head = session.get(AuditChainHead, 1, populate_existing=True)
    if head is None:
        if count:
            problems.append(Problem(None, "events exist but the chain head is missing"))
    else:
        if head.count != count or head.last_hash != prev_hash:
            problems.append(
                Problem(
                    None,
                    f"the chain head ({head.count} events) does not match the stored events ({count}): "
                    "the newest events are missing or the head was changed",
                )
            )
        if (head.count, head.mac) != (0, None) and not hmac.compare_digest(
            head.mac or "", head_mac(key, head.count, head.last_hash)
        ):
            problems.append(Problem(None, "the chain head was changed without the audit key"))
    if count and bad == count:
        problems.append(
            Problem(None, "no event matches its keyed hash: is AUDIT_KEY the key this trail was written with?")
        )
    return problems


def _when(cp: Checkpoint) -> str:
    return cp.at.astimezone(dt.UTC).isoformat(timespec="seconds")


def _iter_events(session: Session, batch: int) -> Iterator[Any]:
    """Every event as a Core row, in chain order (keyset pages, nothing kept in the session)."""
    last_id = 0
    while True:
        rows = session.execute(select(_EVENTS).where(_EVENTS.c.id > last_id).order_by(_EVENTS.c.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id
