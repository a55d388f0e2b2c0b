"""Test fixtures: a migrated database per backend, per-test rollback, clock, factories.

Every test that takes ``app`` (or ``client``/``session``) runs once on SQLite and once on
PostgreSQL. PostgreSQL is used when a server answers at QOL_TEST_PG_URL (default: the local
trust-auth server); without one those variants are skipped with a visible reason, unless
QOL_REQUIRE_POSTGRES=1 (CI), where a missing server is an error.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from qol_app import create_app
from qol_app.db import Base, make_engine
from qol_app.migrations import alembic_config
from tests.factories import Factory, IsolatedClient

PG_ADMIN_URL = os.environ.get("QOL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("QOL_REQUIRE_POSTGRES") == "1"
FIXED_NOW = dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
AUDIT_KEY = "test-audit-key"


def _pg_available() -> str | None:
    """None when the server answers, else why not."""
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


_PG_PROBLEM = _pg_available()


#: End-to-end tests, left out of the line coverage figure (pytest-cov's ``no_cover``): a browser,
#: real processes, the fuzz of every route, the demo played through the services, every route
#: for every role. What they reach, the focused tests reach too; the figure is theirs, and
#: tracing these cost about a third more time. They still run, and fail, as usual.
NOT_COVERED = (
    "tests/browser/",
    "tests/deploy/",
    "tests/web/test_fuzz_forms.py",
    "tests/web/test_demo.py",
    "tests/web/test_demo_story.py",
    "tests/web/test_access_matrix.py",
    "tests/web/test_compliance_forms.py::test_demo_dashboard_and_export_have_the_same_numerators_and_denominators",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(NOT_COVERED):
            item.add_marker(pytest.mark.no_cover)


def pytest_report_header(config: pytest.Config) -> str:
    if _PG_PROBLEM is None:
        return f"PostgreSQL: testing against {make_url(PG_ADMIN_URL).render_as_string(hide_password=True)}"
    if REQUIRE_PG:
        return f"PostgreSQL: REQUIRED but unreachable ({_PG_PROBLEM}); its variants will fail"
    return f"PostgreSQL: NOT reachable ({_PG_PROBLEM}); PostgreSQL variants are SKIPPED"


def _migrate(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "test.sqlite"
    url = f"sqlite:///{path}"
    _migrate(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    if _PG_PROBLEM is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (QOL_REQUIRE_POSTGRES=1) but unreachable: {_PG_PROBLEM}")
        pytest.skip(f"PostgreSQL not reachable: {_PG_PROBLEM}")
    name = f"qol_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    _migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """The engine as the app uses it (committing tests, benchmarks-like threads)."""
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def rollback_engine(database_url: str) -> Iterator[Engine]:
    """An engine whose transactions can be rolled back after each test, savepoints included.

    pysqlite's own transaction handling commits on RELEASE SAVEPOINT outside an explicit
    BEGIN; SQLAlchemy's documented recipe takes over BEGIN so savepoints nest properly.
    """
    eng = make_engine(database_url)
    if eng.dialect.name == "sqlite":

        @event.listens_for(eng, "connect")
        def _no_driver_transactions(dbapi_connection, record):
            dbapi_connection.isolation_level = None

        @event.listens_for(eng, "begin")
        def _explicit_begin(conn):
            conn.exec_driver_sql("BEGIN")

    yield eng
    eng.dispose()


def _config(url: str, tmp: Path) -> dict:
    return {
        "TESTING": True,
        "DATABASE_URL": url,
        "SECRET_KEY": "test-secret",
        "AUDIT_KEY": AUDIT_KEY,
        "FROZEN_NOW": FIXED_NOW,
        "PUBLIC_BASE_URL": "http://localhost",
        "SERVER_NAME": "localhost",
        "EXPORT_DIR": str(tmp / "exports"),
    }


@pytest.fixture
def app(rollback_engine: Engine, database_url: str, tmp_path: Path):
    """An app whose session lives in a transaction rolled back after the test."""
    application = create_app(_config(database_url, tmp_path))
    application.test_client_class = IsolatedClient  # each request its own app context and ``g``
    application.extensions["qol_db"]["engine"].dispose()
    connection = rollback_engine.connect()
    outer = connection.begin()
    application.extensions["qol_db"]["engine"] = rollback_engine
    application.extensions["qol_db"]["bind"] = connection
    application.extensions["qol_db"]["session_options"] = {"join_transaction_mode": "create_savepoint"}
    with application.app_context():
        yield application
    outer.rollback()
    connection.close()


@pytest.fixture
def committing_app(engine: Engine, database_url: str, tmp_path: Path):
    """An app that really commits (for concurrency tests); every table is emptied afterwards."""
    application = create_app(_config(database_url, tmp_path))
    application.test_client_class = IsolatedClient
    application.extensions["qol_db"]["engine"].dispose()
    application.extensions["qol_db"]["engine"] = engine
    application.extensions["qol_db"]["bind"] = engine
    with application.app_context():
        yield application
    wipe(engine)


def wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


#: Argon2id at test cost (argon2-cffi's defaults take ~0.5 s per hash or check on this machine).
QUICK_ARGON2 = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def quick_argon2(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every in-process hash and check uses real Argon2id at the cheapest cost; a test marked
    ``real_argon2`` keeps the production cost (tests/unit/test_passwords.py checks it). Processes
    a test starts (gunicorn, the scheduler) hash at the production cost."""
    if request.node.get_closest_marker("real_argon2") is None:
        monkeypatch.setattr("qol_app.passwords._hasher", QUICK_ARGON2)
        monkeypatch.setattr("qol_app.passwords._pin_hasher", QUICK_ARGON2)


@pytest.fixture
def session(app):
    from qol_app.db import db

    return db.session


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def now() -> dt.datetime:
    return FIXED_NOW


@pytest.fixture
def factory(session, now):
    return Factory(session, now)


@pytest.fixture(scope="session")
def seen_across_backends() -> dict:
    """A place for a test parametrised over both databases to leave what it saw, so the run on the
    second backend can compare with the first (e.g. the demo story must be the same on both)."""
    return {}


@pytest.fixture
def site_c30_registry(tmp_path: Path):
    """The shipped instruments plus ``site_c30``, a renamed copy of the QLQ-C30 that only this
    registry knows: a function given it must use it, not the shipped registry."""
    from qol_app.instruments import DEFAULT_DIRECTORY, load_registry

    text = (DEFAULT_DIRECTORY / "eortc_qlq_c30.yaml").read_text(encoding="utf-8")
    (tmp_path / "site_c30.yaml").write_text(text.replace("id: eortc_qlq_c30", "id: site_c30", 1), encoding="utf-8")
    return load_registry(DEFAULT_DIRECTORY, tmp_path)
