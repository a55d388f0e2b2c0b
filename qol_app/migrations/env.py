"""Alembic environment: the URL comes from the app config (``qol db upgrade``) or the caller."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

import qol_app.models  # noqa: F401  (fills the metadata)
from qol_app.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            _run(connection)
            return
        # SQLite rebuilds a table to alter it (batch mode): with foreign keys enforced, dropping
        # the old table would fail or cascade. Alembic's documented recipe: enforcement off for
        # the run (the pragma only works outside a transaction), then every key checked.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        _run(connection)
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        if broken:
            raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {broken[:5]}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
