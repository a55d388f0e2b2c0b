"""Backups under load: a separate process keeps enrolling patients (each an acknowledged, audited
commit) while the backup runs; the restored copy passes ``qol audit verify`` and holds every write
acknowledged before the backup began.

SQLite: ``qol backup`` (the online backup API). PostgreSQL: the README's pg_dump/pg_restore steps.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from deploy.stack import BIN, PG_ADMIN_URL
from qol_app import create_app

pytestmark = pytest.mark.slow

WRITER = r"""
import sys, time
from qol_app import create_app
from qol_app.db import db, utcnow
from qol_app.models import Site
from qol_app.services.audit import Actor
from qol_app.services.enrolment import enroll_patient

app = create_app()
with app.app_context():
    site = Site(code="BK", name="Backup site", timezone="Asia/Shanghai", default_language="zh_Hans", emergency_phone="120")
    db.session.add(site)
    db.session.commit()
    i = 0
    while True:
        now = utcnow()
        enroll_patient(db.session, Actor.system("writer"), study_id=f"BK-{i:06d}", site=site, arm="AB"[i % 2],
                       randomization_date=now.date(), language="zh_Hans", now=now, with_pin=False)
        db.session.commit()
        print(f"ack {i} {time.monotonic_ns()}", flush=True)  # acknowledged: the commit returned
        i += 1
        time.sleep(0.005)
"""


def _env(url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QOL_")}
    return env | {"QOL_DATABASE_URL": url, "QOL_SECRET_KEY": "backup-test-" + "k" * 32}


def _qol(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "qol", *args], env=env, capture_output=True, text=True, timeout=300)


def _with_writer(env: dict, tmp: Path, take_backup) -> tuple[dict[int, int], int, int]:
    """Run the writer, call ``take_backup()`` once it has written a while; returns (acks, t_start, t_end)."""
    out = (tmp / "writer.out").open("w+")
    writer = subprocess.Popen([BIN / "python", "-c", WRITER], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while (tmp / "writer.out").read_text().count("ack ") < 30:
            assert writer.poll() is None and time.monotonic() < deadline, (tmp / "writer.out").read_text()[-2000:]
            time.sleep(0.05)
        started = time.monotonic_ns()
        take_backup()
        ended = time.monotonic_ns()
        before = (tmp / "writer.out").read_text().count("ack ")
        while (tmp / "writer.out").read_text().count("ack ") < before + 10:  # writes go on afterwards
            assert writer.poll() is None, (tmp / "writer.out").read_text()[-2000:]
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGTERM)
        writer.wait(timeout=20)
        out.close()
    acks = {}
    for line in (tmp / "writer.out").read_text().splitlines():
        if line.startswith("ack "):
            _, i, at = line.split()
            acks[int(i)] = int(at)
    return acks, started, ended


def _check(acks: dict[int, int], started: int, ended: int, in_backup: set[str], total_written: int) -> None:
    acknowledged_before = {f"BK-{i:06d}" for i, at in acks.items() if at < started}
    assert len(acknowledged_before) >= 30
    missing = acknowledged_before - in_backup
    assert not missing, f"acknowledged before the backup but not in it: {sorted(missing)[:5]}"
    # The backup is one instant: nothing acknowledged after it ended is in it, and more was written.
    after = {f"BK-{i:06d}" for i, at in acks.items() if at > ended}
    assert after and not (after & in_backup)
    assert total_written > len(in_backup)


def test_sqlite_backup_under_writes_restores_whole(tmp_path):
    live = tmp_path / "live.sqlite"
    env = _env(f"sqlite:///{live}")
    assert _qol(env, "db", "upgrade").returncode == 0
    backup = tmp_path / "backups" / "nightly.sqlite"
    # The command runs in this process, so "before the backup" is measured to the moment it starts
    # copying (a subprocess would spend a second importing first); the writer is another process.
    app = create_app({"DATABASE_URL": f"sqlite:///{live}", "SECRET_KEY": env["QOL_SECRET_KEY"]})
    result: dict = {}

    def take_backup():
        result["done"] = app.test_cli_runner().invoke(args=["backup", str(backup)])

    acks, started, ended = _with_writer(env, tmp_path, take_backup)
    app.extensions["qol_db"]["engine"].dispose()
    assert result["done"].exit_code == 0, result["done"].output
    assert "integrity check ok" in result["done"].output
    assert not list(backup.parent.glob("*.partial"))

    # Restore as the README says: the backup file becomes the database file (services stopped).
    restored = tmp_path / "restored" / "qol.sqlite"
    restored.parent.mkdir()
    shutil.copy(backup, restored)
    renv = _env(f"sqlite:///{restored}")
    verify = _qol(renv, "audit", "verify")
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout
    assert _qol(renv, "db", "upgrade").returncode == 0
    with sqlite3.connect(restored) as con:
        in_backup = {row[0] for row in con.execute("SELECT study_id FROM patients")}
    with sqlite3.connect(live) as con:
        total = con.execute("SELECT count(*) FROM patients").fetchone()[0]
    _check(acks, started, ended, in_backup, total)
    # A second backup to the same name is refused rather than overwriting the first.
    again = _qol(env, "backup", str(backup))
    assert again.returncode == 1 and "exists already" in again.stderr


def test_backup_command_points_postgresql_to_pg_dump(tmp_path):
    done = _qol(_env("postgresql+psycopg://qol:secret@db.example.org/qol"), "backup")
    assert done.returncode == 2 and "pg_dump --format=custom" in done.stderr and "secret" not in done.stderr


def test_pg_dump_under_writes_restores_whole(needs_postgres, tmp_path):
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian: postgresql-client)")
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    live, restored = f"qol_bk_{uuid.uuid4().hex[:8]}", f"qol_rs_{uuid.uuid4().hex[:8]}"
    url = make_url(PG_ADMIN_URL)
    libpq = {
        name: url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
        for name in (live, restored)
    }
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{live}"'))
    try:
        env = _env(url.set(database=live).render_as_string(hide_password=False))
        assert _qol(env, "db", "upgrade").returncode == 0
        dump = tmp_path / "qol.dump"
        result: dict = {}

        def take_backup():  # the README's backup step
            result["done"] = subprocess.run(
                ["pg_dump", "--format=custom", f"--file={dump}", libpq[live]], capture_output=True, text=True
            )

        acks, started, ended = _with_writer(env, tmp_path, take_backup)
        assert result["done"].returncode == 0, result["done"].stderr
        # The README's restore steps: an empty database, pg_restore, then qol audit verify.
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{restored}"'))
        done = subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={libpq[restored]}", dump],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        renv = _env(url.set(database=restored).render_as_string(hide_password=False))
        verify = _qol(renv, "audit", "verify")
        assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout
        check = _qol(renv, "check")
        assert "migrations: at head" in check.stdout, check.stdout
        engine = create_engine(url.set(database=restored))
        with engine.connect() as conn:
            in_backup = set(conn.scalars(text("SELECT study_id FROM patients")))
            # The append-only guard came back with the restore.
            with pytest.raises(Exception, match="append-only"):
                conn.execute(text("DELETE FROM audit_events"))
        engine.dispose()
        engine = create_engine(url.set(database=live))
        with engine.connect() as conn:
            total = conn.scalar(text("SELECT count(*) FROM patients"))
        engine.dispose()
        _check(acks, started, ended, in_backup, total)
    finally:
        with admin.connect() as conn:
            for name in (live, restored):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
