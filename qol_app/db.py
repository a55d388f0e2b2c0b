"""SQLAlchemy wiring: the declarative base, shared column types and the per-app engine/session.

Plain SQLAlchemy 2.x rather than Flask-SQLAlchemy: sessions are scoped to the Flask app
context, and tests can bind them to one connection inside a transaction that is rolled back.
"""

from __future__ import annotations

import datetime as dt
import re
import weakref
from typing import Any, ClassVar, cast

from flask import Flask, current_app
from flask.globals import app_ctx
from sqlalchemy import JSON, Connection, CursorResult, DateTime, MetaData, Result, Table, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPICursor, ExecutionContext
from sqlalchemy.event import listen
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import TypeDecorator

#: Key in ``Session.info`` under which a session carries the audit key (see ``services.audit``).
AUDIT_KEY_INFO = "qol_audit_key"
#: The ``prev_hash`` of the audit chain's first event (and of an empty chain's head).
GENESIS = "0" * 64

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An instant stored in UTC and always returned timezone-aware.

    SQLite has no timezone type, so we store naive UTC there and re-attach UTC on load;
    PostgreSQL uses ``timestamptz``. Naive datetimes are refused: they are always a bug here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given for a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    #: Every model here is mapped to a ``Table`` (SQLAlchemy types it as the wider ``FromClause``).
    __table__: ClassVar[Table]

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE/DELETE/INSERT matched.

    ``Session.execute`` is typed as returning ``Result``; for a DML statement it is a ``CursorResult``.
    """
    return cast("CursorResult[Any]", result).rowcount


class json_object_agg(GenericFunction[Any]):  # noqa: N801 - named as the SQL function
    """``json_object_agg(key, value)``: rows folded into one JSON object, returned as a dict.

    PostgreSQL's own name; SQLite calls it ``json_group_object``. One row per form instead of a
    row per answer is much cheaper to fetch.
    """

    type = JSON()
    inherit_cache = True


@compiles(json_object_agg, "sqlite")
def _json_group_object(element: json_object_agg, compiler: Any, **kw: Any) -> str:
    return f"json_group_object({compiler.process(element.clauses, **kw)})"


def utcnow() -> dt.datetime:
    """The current instant; the only clock read outside the request/CLI edges' explicit ``now``."""
    return dt.datetime.now(dt.UTC)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """Foreign keys on and WAL so gunicorn workers and the scheduler can share one SQLite file.

    ``synchronous=FULL``: each commit is synced to disk before it is acknowledged, so a saved
    page survives a power cut too, not only a crashed process (WAL with NORMAL may lose the
    last commits then).
    """
    module = type(dbapi_connection).__module__
    if module.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()


# ---- one lock order: the chain head before any row --------------------------------------------
#: Statements that take row locks: DML (also as a writable CTE) and SELECT ... FOR UPDATE/SHARE.
_TAKES_ROW_LOCKS = re.compile(
    r"(^|\()\s*(INSERT|UPDATE|DELETE|MERGE)\b|\bFOR\s+(UPDATE|NO\s+KEY\s+UPDATE|SHARE|KEY\s+SHARE)\b", re.IGNORECASE
)
#: Functions that lock the head themselves (``record``'s statements).
_LOCK_FUNCTIONS = ("audit_lock_head", "audit_append")
_LOCK_HEAD = "SELECT head_count FROM audit_lock_head()"
#: Before migration i18a (a database being migrated on an engine with this hook): the table itself.
_LOCK_HEAD_TABLE = "SELECT 1 FROM audit_chain_head WHERE id = 1 FOR UPDATE"
_CREATE_HEAD = (
    f"INSERT INTO audit_chain_head (id, last_hash, count) VALUES (1, '{GENESIS}', 0) ON CONFLICT (id) DO NOTHING"
)
_HAS_LOCK_FUNCTION = "SELECT to_regprocedure('audit_lock_head()') IS NOT NULL"
#: Key in the DBAPI connection's ``info``: the lock function exists (cached once seen).
_FUNCTION_SEEN = "qol_audit_lock_function"
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
    locks_rows = _TAKES_ROW_LOCKS.search(statement) is not None
    if any(name in statement for name in _LOCK_FUNCTIONS) or (locks_rows and "audit_chain_head" in statement):
        conn.info[_HEAD_HELD_BY] = weakref.ref(transaction)  # locking the head itself: first anyway
        return
    if not locks_rows:
        return
    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is None or getattr(dbapi_connection, "autocommit", False):
        return  # each statement is its own transaction: nothing to order
    lock = dbapi_connection.cursor()
    try:
        if not conn.info.get(_FUNCTION_SEEN):
            lock.execute(_HAS_LOCK_FUNCTION)
            (seen,) = lock.fetchone() or (None,)  # a SELECT of one value: always one row
            conn.info[_FUNCTION_SEEN] = bool(seen)
        if conn.info[_FUNCTION_SEEN]:
            lock.execute(_LOCK_HEAD)  # creates a missing head itself
        else:
            lock.execute(_LOCK_HEAD_TABLE)
            if lock.fetchone() is None:
                lock.execute(_CREATE_HEAD)
                lock.execute(_LOCK_HEAD_TABLE)
    finally:
        lock.close()
    conn.info[_HEAD_HELD_BY] = weakref.ref(transaction)  # the next transaction is a new object: locks again


def _forget_head(conn: Connection, name: str, context: Any) -> None:
    conn.info.pop(_HEAD_HELD_BY, None)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for a configured URL with settings that suit each backend."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 15})
    else:
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "postgresql":
        lock_head_first(engine)
    return engine


def _scope() -> int:
    return id(app_ctx._get_current_object())  # type: ignore[attr-defined]  # a LocalProxy, typed as AppContext


def _new_session() -> Session:
    ext = current_app.extensions["qol_db"]
    return Session(
        bind=ext["bind"],
        expire_on_commit=False,
        info={AUDIT_KEY_INFO: ext["audit_key"]},
        **ext.get("session_options", {}),
    )


class Database:
    """The one session registry; ``db.session`` is the session of the current app context."""

    def __init__(self) -> None:
        # scoped_session calls any factory; its stubs ask for a sessionmaker
        self.sessions: scoped_session[Session] = scoped_session(_new_session, scopefunc=_scope)  # type: ignore[arg-type]

    def init_app(self, app: Flask) -> None:
        try:
            engine = make_engine(app.config["DATABASE_URL"])
        except (ArgumentError, NoSuchModuleError) as exc:
            raise RuntimeError(
                f"QOL_DATABASE_URL / DATABASE_URL is not a usable database URL ({exc}); expected e.g. "
                "sqlite:///instance/qol.sqlite or postgresql+psycopg://user@host:5432/dbname"
            ) from None
        app.extensions["qol_db"] = {"engine": engine, "bind": engine, "audit_key": app.config["AUDIT_KEY"].encode()}
        app.teardown_appcontext(self._remove)

    def _remove(self, exc: BaseException | None) -> None:
        self.sessions.remove()

    @property
    def session(self) -> Session:
        """The session of the current app context (made on first use, removed with the context)."""
        return self.sessions()

    @property
    def engine(self) -> Engine:
        return current_app.extensions["qol_db"]["engine"]


db = Database()
