"""The scheduler process: single-instance lock, CLI, the APScheduler loop, and two schedulers at once."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time

import pytest
from sqlalchemy import func, select, text

from qol_app.db import db
from qol_app.models import AuditEvent, OutboxMessage, Patient, SchedulerHeartbeat
from qol_app.scheduler import LockHeld, lock_for, run_once
from qol_app.scheduler.jobs import run_sweep
from qol_app.scheduler.lock import AdvisoryLock, LeaseLock
from qol_app.scheduler.process import build_scheduler, stop_handler
from qol_app.services import audit, treatment_events
from qol_app.services.audit import Actor
from tests.db.conftest import RecordingChannel
from tests.factories import Factory

NURSE = Actor("staff", None)
T0 = dt.datetime(2026, 3, 20, 4, 0, tzinfo=dt.UTC)


def test_lock_kind_follows_the_database(app):
    lock = lock_for(app)
    expected = AdvisoryLock if app.extensions["qol_db"]["engine"].dialect.name == "postgresql" else LeaseLock
    assert isinstance(lock, expected)


def test_second_scheduler_exits_with_a_clear_message(app):
    first = lock_for(app)
    first.acquire()
    try:
        assert first.check()
        with pytest.raises(LockHeld, match="another scheduler is running"):
            run_once(app)
        result = app.test_cli_runner().invoke(args=["scheduler", "--once"])
        assert result.exit_code == 75
        assert "another scheduler is running" in result.output and "--wait" in result.output
    finally:
        first.release()
    # Released: the next one gets it.
    second = lock_for(app)
    second.acquire()
    second.release()


def test_waiting_scheduler_starts_when_the_first_one_stops(app):
    first = lock_for(app)
    first.acquire()
    threading.Timer(0.3, first.release).start()
    second = lock_for(app)
    started = time.monotonic()
    second.acquire(wait=True, poll_seconds=0.05, timeout=10)
    try:
        assert time.monotonic() - started >= 0.25
    finally:
        second.release()


def test_once_runs_a_sweep_and_beats(app, session, factory):
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 3, 10), phone="13800000003").patient
    session.commit()
    result = app.test_cli_runner().invoke(args=["scheduler", "--once"])
    assert result.exit_code == 0, result.output
    assert "errors: none" in result.output and "reconcile: 1 patient(s)" in result.output
    session.expire_all()
    beat = session.get(SchedulerHeartbeat, "scheduler")
    assert beat.last_ok_at == app.config["FROZEN_NOW"] and beat.last_error is None
    assert session.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.patient_id == patient.id)) >= 1
    status = app.test_cli_runner().invoke(args=["scheduler", "status"])
    assert status.exit_code == 0 and "ok" in status.output


def test_status_command_reports_a_stale_scheduler(app):
    result = app.test_cli_runner().invoke(args=["scheduler", "status"])
    assert result.exit_code == 1 and "never" in result.output and "STALE" in result.output


def test_apscheduler_job_settings(app):
    scheduler = build_scheduler(app, lock_for(app), 90)
    assert {j.id for j in scheduler.get_jobs()} >= {"sweep", "exports"}
    job = scheduler.get_job("sweep")
    assert (job.misfire_grace_time, job.coalesce, job.max_instances) == (90, True, 1)
    assert job.trigger.interval == dt.timedelta(seconds=90)
    exports = scheduler.get_job("exports")  # the statistician page's background exports, one at a time
    assert (exports.max_instances, exports.trigger.interval) == (1, dt.timedelta(seconds=5))


def test_blocking_scheduler_runs_the_sweep(committing_app, tmp_path):
    app = committing_app
    lock = lock_for(app)
    lock.acquire()
    scheduler = build_scheduler(app, lock, 3600)
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with app.app_context():
                beat = db.session.get(SchedulerHeartbeat, "scheduler")
                if beat is not None:
                    break
            time.sleep(0.1)
        assert beat is not None and beat.last_error is None
    finally:
        scheduler.shutdown(wait=True)
        thread.join(10)
        lock.release()


def test_a_second_stop_signal_is_harmless(app):
    """``make run``'s shell and a supervisor may both send SIGTERM: the second must not raise
    (it used to, from inside the signal handler, ending the process with a traceback)."""
    lock = lock_for(app)
    lock.acquire()
    scheduler = build_scheduler(app, lock, 3600)
    scheduler.remove_job("sweep")  # about stopping only: no sweep left running into the next test
    stop = stop_handler(scheduler)
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not scheduler.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.running
        stop(15, None)
        stop(15, None)
        thread.join(10)
        assert not thread.is_alive() and not scheduler.running
    finally:
        lock.release()


def test_lost_lock_stops_the_scheduler(app):
    lock = lock_for(app)
    lock.acquire()
    scheduler = build_scheduler(app, lock, 3600)
    lock.release()  # e.g. the PostgreSQL connection holding the advisory lock died
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive() and scheduler.lock_lost


def test_advisory_lock_notices_a_dead_connection(app):
    engine = app.extensions["qol_db"]["engine"]
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    lock = lock_for(app)
    lock.acquire()
    backend = lock.conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    assert not lock.check()
    lock.release()
    successor = lock_for(app)
    successor.acquire()  # the server dropped the lock with the connection
    successor.release()


# ---- two schedulers at once against PostgreSQL ----------------------------------------------
def _seed(app, n_patients: int) -> None:
    with app.app_context():
        session = db.session
        factory = Factory(session, T0)
        site = factory.site()
        for i in range(n_patients):
            patient = factory.patient(
                site,
                arm="AB"[i % 2],
                randomization_date=dt.date(2026, 3, 2),
                phone=f"1380000{i:04d}",
                email=f"p{i}@example.org",
            ).patient
            treatment_events.record_event(
                session, NURSE, patient, kind="systemic_cycle", date=dt.date(2026, 3, 3), now=T0
            )
            if patient.arm == "A":
                treatment_events.record_event(
                    session, NURSE, patient, kind="intrathecal_dose", date=dt.date(2026, 3, 17), now=T0
                )
        # Some patients never reconciled: both schedulers will try to create their rows.
        for _ in range(3):
            factory.patient(site, arm="B", randomization_date=dt.date(2026, 3, 20), phone="13900000000")
        session.commit()


def test_two_schedulers_at_once_send_nothing_twice(committing_app):
    app = committing_app
    if app.extensions["qol_db"]["engine"].dialect.name != "postgresql":
        pytest.skip("concurrent writers are a PostgreSQL deployment; SQLite runs one writer at a time")
    _seed(app, 12)
    recorder = RecordingChannel()
    channels = {"sms": recorder, "email": recorder, "task": recorder}
    now = T0 + dt.timedelta(days=3)  # three days of catching up for both
    barrier = threading.Barrier(2)
    reports = []

    def scheduler() -> None:
        barrier.wait()
        reports.append(run_sweep(app, now, channels=channels))

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(reports) == 2 and all(r.ok for r in reports), [r.errors for r in reports]

    keys = [m.dedupe_key for m in recorder.sent]
    duplicates = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert keys and not duplicates
    with app.app_context():
        session = db.session
        sent = session.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.status == "sent")).all()
        assert sorted(sent) == sorted(keys)
        # Each status change and each created timepoint audited exactly once.
        rows = session.execute(
            select(AuditEvent.entity_id, AuditEvent.action, AuditEvent.new).where(AuditEvent.entity_type == "timepoint")
        ).all()
        changes = collections.Counter((r.entity_id, r.action, r.new.get("status")) for r in rows)
        assert max(changes.values()) == 1
        assert audit.verify(session) == []
        unreconciled = session.scalars(select(Patient.id).where(Patient.randomization_date == dt.date(2026, 3, 20)))
        assert len(unreconciled.all()) == 3
