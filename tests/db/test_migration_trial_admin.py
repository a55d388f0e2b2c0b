"""The trial-administration migration on a database that already holds data (a demo from before it).

SQLite rebuilds ``staff_users`` to change its role CHECK: memberships must survive (no cascade),
and the existing demo rows must be marked so ``qol demo`` keeps working on that database.
"""

from __future__ import annotations

import os
import uuid

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from qol_app.migrations import alembic_config
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL, REQUIRE_PG

NOW = "2026-03-01 00:00:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def old_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}"
        return
    if _PG_PROBLEM is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required but unreachable: {_PG_PROBLEM}")
        pytest.skip(f"PostgreSQL not reachable: {_PG_PROBLEM}")
    name = f"qol_mig_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_keeps_memberships_and_marks_old_demo_rows(old_url):
    command.upgrade(alembic_config(old_url), "0002")
    engine = create_engine(old_url)
    try:
        with engine.begin() as conn:
            for sql in [
                "INSERT INTO sites (id, code, name, timezone, default_language, emergency_phone, created_at) VALUES "
                f"(1, 'S01', 'Shanghai demo hospital', 'Asia/Shanghai', 'zh_Hans', '120', '{NOW}'), "
                f"(2, 'R01', 'A real hospital', 'Asia/Shanghai', 'zh_Hans', '120', '{NOW}')",
                "INSERT INTO staff_users (id, username, full_name, email, role, password_hash, active, language, "
                f"created_at) VALUES (1, 'nurse.s01', 'Demo', 'nurse.s01@demo.invalid', 'nurse', 'x', true, 'en', '{NOW}'), "
                f"(2, 'real.nurse', 'Real', 'real@example.org', 'nurse', 'x', true, 'en', '{NOW}')",
                "INSERT INTO site_memberships (user_id, site_id) VALUES (1, 1), (2, 2)",
            ]:
                conn.execute(text(sql))
        command.upgrade(alembic_config(old_url), "head")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT user_id, site_id FROM site_memberships ORDER BY user_id")).all() == [
                (1, 1),
                (2, 2),
            ]
            marked = conn.execute(text("SELECT entity_type, entity_id FROM demo_records ORDER BY 1, 2")).all()
            assert marked == [("sites", 1), ("staff_users", 1)]
            conn.execute(text("UPDATE staff_users SET role = 'monitor' WHERE id = 2"))  # the new role is allowed
            with pytest.raises(Exception, match="(?i)check"):
                with conn.begin_nested():
                    conn.execute(text("UPDATE staff_users SET role = 'superuser' WHERE id = 2"))
        command.downgrade(alembic_config(old_url), "0002")
        command.upgrade(alembic_config(old_url), "head")
    finally:
        engine.dispose()
