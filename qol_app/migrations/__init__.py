"""Alembic migrations, shipped inside the package and run by ``qol db upgrade``."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic.config import Config

HERE = Path(__file__).parent


def alembic_config(url: str, connection=None, *, audit_key: str | None = None) -> Config:
    """An Alembic config for ``url``; pass ``connection`` to migrate inside a caller's connection.

    ``audit_key`` (the ``AUDIT_KEY`` setting) is needed by migrations that re-key the audit trail
    of a database that already holds events (``qol db upgrade`` passes it).
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    if audit_key:
        cfg.attributes["audit_key"] = audit_key
    return cfg


@functools.lru_cache(maxsize=1)
def head_revisions() -> frozenset[str]:
    """The revision(s) a fully migrated database is at (read from the shipped scripts, once)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())
