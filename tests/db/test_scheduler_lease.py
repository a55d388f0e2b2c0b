"""One scheduler per database on SQLite too (a lease row), and a second active scheduler on staff pages."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import update

from qol_app.db import db
from qol_app.models import SchedulerLease
from qol_app.scheduler.lock import LeaseLock, lock_for
from qol_app.scheduler.process import build_scheduler
from qol_app.services import heartbeat
from tests.conftest import AUDIT_KEY
from tests.factories import isolated_client, login, no_csrf


@pytest.fixture
def sqlite_app(committing_app):
    if committing_app.extensions["qol_db"]["engine"].dialect.name != "sqlite":
        pytest.skip("the lease is SQLite's lock; PostgreSQL uses an advisory lock")
    return committing_app


def test_a_second_install_on_the_same_database_cannot_start(sqlite_app, tmp_path, database_url):
    """Another process, another instance folder, the same database file: the lease is in the database."""
    first = lock_for(sqlite_app)
    first.acquire()
    try:
        env = {
            **os.environ,
            "QOL_DATABASE_URL": database_url,
            "QOL_SECRET_KEY": "another install",
            "QOL_AUDIT_KEY": AUDIT_KEY,
        }
        other = subprocess.run(
            [sys.executable, "-c", "from qol_app.cli import main; main()", "scheduler", "--once"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert other.returncode == 75, other.stdout + other.stderr
        assert "another scheduler is running" in other.stderr
    finally:
        first.release()


def test_a_crashed_holders_lease_expires_and_is_taken_over(sqlite_app):
    engine = sqlite_app.extensions["qol_db"]["engine"]
    crashed, successor = LeaseLock(engine, seconds=300), LeaseLock(engine, seconds=300)
    assert crashed.try_acquire()  # and never released: the process was killed
    assert not successor.try_acquire()
    with engine.begin() as conn:  # time passes beyond the lease
        conn.execute(update(SchedulerLease).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert successor.try_acquire()
    assert not crashed.check(), "the old holder must notice it lost the lease (and stop)"
    assert successor.check()
    successor.release()
    assert LeaseLock(engine).try_acquire()


def test_the_lease_is_renewed_while_running(sqlite_app):
    engine = sqlite_app.extensions["qol_db"]["engine"]
    lock = LeaseLock(engine, seconds=3)
    assert lock.try_acquire()
    scheduler = build_scheduler(sqlite_app, lock, 3600)
    scheduler.remove_job("sweep")  # only the renewal here
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    try:
        time.sleep(4)  # longer than the lease: renewed every second meanwhile
        assert not LeaseLock(engine, seconds=3).try_acquire()
        assert not scheduler.lock_lost
    finally:
        scheduler.shutdown(wait=True)
        thread.join(10)
        lock.release()


def _beats(session, name, times):
    for at in times:
        heartbeat.beat(session, at, instance=name)
    session.commit()


def test_two_schedulers_at_once_show_on_staff_pages(app, factory, session, now):
    no_csrf(app)
    nurse = factory.staff("nurse", sites=[factory.site()])
    client = isolated_client(app)
    login(client, nurse)
    one, two = heartbeat.instance_name("host-a", 11), heartbeat.instance_name("host-b", 22)
    minute = dt.timedelta(minutes=1)
    _beats(session, one, [now - 10 * minute, now - 8 * minute])
    _beats(session, two, [now - 4 * minute, now - 2 * minute])  # a restart: the first had stopped
    assert "Two schedulers are running" not in client.get("/staff/").get_data(as_text=True)
    _beats(session, one, [now - minute])  # ...but the first is still running
    for page in ("/staff/", "/staff/patients", "/staff/account"):
        body = client.get(page).get_data(as_text=True)
        assert "Two schedulers are running" in body and "host-a (pid 11)" in body and "host-b (pid 22)" in body
    assert set(heartbeat.status(session, now, 30).also_running) == {("host-a", 11), ("host-b", 22)}


def test_a_scheduler_beats_its_own_row_and_removes_it_on_a_clean_stop(sqlite_app):
    from qol_app.scheduler.jobs import forget_instance, run_sweep

    run_sweep(sqlite_app, channels={})
    name = heartbeat.instance_name()
    with sqlite_app.app_context():
        row = db.session.get(heartbeat.SchedulerHeartbeat, name)
        assert row is not None and row.started_at is not None
    forget_instance(sqlite_app)
    with sqlite_app.app_context():
        assert db.session.get(heartbeat.SchedulerHeartbeat, name) is None
