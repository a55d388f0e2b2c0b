"""SQLAlchemy wiring: the declarative base, shared column types and the per-app engine/session.

Plain SQLAlchemy 2.x rather than Flask-SQLAlchemy: sessions are scoped to the Flask app
context, and tests can bind them to one connection inside a transaction that is rolled back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask, current_app
from flask.globals import app_ctx
from sqlalchemy import JSON, DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import TypeDecorator

#: Key in ``Session.info`` under which a session carries the audit key (see ``services.audit``).
AUDIT_KEY_INFO = "qol_audit_key"

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
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


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


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for a configured URL with settings that suit each backend."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 15})
    else:
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "postgresql":
        from qol_app.services.audit import lock_head_first  # imported here: it imports the models

        lock_head_first(engine)
    return engine


def _scope() -> int:
    return id(app_ctx._get_current_object())


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
        self.session = scoped_session(_new_session, scopefunc=_scope)

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
        self.session.remove()

    @property
    def engine(self) -> Engine:
        return current_app.extensions["qol_db"]["engine"]


db = Database()
