"""Regenerate the initial schema migration from the models (only while nothing is deployed).

Usage: .venv/bin/python scripts/regen_initial_migration.py
Once a release is deployed, add new revisions with ``alembic revision --autogenerate`` instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from qol_app.migrations import HERE, alembic_config

for old in (HERE / "versions").glob("*_0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as tmp:
    # Later hand-written revisions depend on 0001: park them while it is regenerated.
    later = [p for p in (HERE / "versions").glob("*.py")]
    for path in later:
        path.rename(Path(tmp) / path.name)
    try:
        cfg = alembic_config(f"sqlite:///{Path(tmp) / 'empty.sqlite'}")
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    finally:
        for path in later:
            (Path(tmp) / path.name).rename(path)
# Dated names would make every regeneration a new file; keep this one stable.
for new in (HERE / "versions").glob("*_0001_*.py"):
    new.rename(new.with_name("20261124_0001_initial_schema.py"))
print("regenerated 0001")
