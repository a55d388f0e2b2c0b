"""The audit chain head and row locks: one lock order (head first), hence no deadlock.

Real concurrent transactions on PostgreSQL (SQLite has no row locks: a writer takes the whole
database, so these orderings cannot arise there). Each transaction sets short deadlock and lock
timeouts, so a regression fails in well under a second instead of hanging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from qol_app.models import AuditChainHead, AuditEvent, Site, Timepoint
from qol_app.services import audit
from tests.conftest import AUDIT_KEY, FIXED_NOW
from tests.factories import Factory

ACTOR = audit.Actor.system("tests")
WAIT = 10  # seconds: only ever reached when something is broken
LOCK_HEAD_NOWAIT = text("SELECT 1 FROM audit_chain_head WHERE id = 1 FOR UPDATE NOWAIT")


@pytest.fixture
def pg(committing_app):
    """The committing app's engine, on PostgreSQL only."""
    engine = committing_app.extensions["qol_db"]["engine"]
    if engine.dialect.name != "postgresql":
        pytest.skip("row-lock ordering is PostgreSQL's; SQLite locks the whole database per writer")
    return engine


@pytest.fixture
def two_timepoints(pg):
    """Timepoints A and B of one patient, committed (so two transactions can fight over them)."""
    from qol_app.db import db

    factory = Factory(db.session, FIXED_NOW)
    enrolled = factory.patient(pin=None, language="en")
    a, b = factory.timepoint(enrolled, status="scheduled"), factory.timepoint(enrolled, status="scheduled")
    db.session.commit()
    return a.id, b.id


def _fast_locks(session: Session) -> None:
    session.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
    session.execute(text("SET LOCAL lock_timeout = '5s'"))


def _open(session: Session, tp_id: int) -> None:
    """What the status sweep does to one row: conditional UPDATE, then its audit event."""
    session.execute(update(Timepoint).where(Timepoint.id == tp_id).values(status="open", status_changed_at=FIXED_NOW))
    audit.record(
        session,
        ACTOR,
        "status",
        entity_type="timepoint",
        entity_id=tp_id,
        old={"status": "scheduled"},
        new={"status": "open"},
        now=FIXED_NOW,
    )


def _wait_until_blocked(engine, pid: int) -> None:
    """Return once backend ``pid`` waits for a lock (deterministic: no sleeping on a guess)."""
    deadline = time.monotonic() + WAIT
    with engine.connect() as monitor:
        while time.monotonic() < deadline:
            waiting = monitor.execute(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar()
            monitor.rollback()
            if waiting == "Lock":
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


def _run(*jobs: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(job):
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(t.is_alive() for t in threads), "a transaction hung"
    return errors


def test_two_audited_rows_against_one_do_not_deadlock(pg, two_timepoints):
    """T1 (a sweep batch): row A, audit, ..., row B, audit. T2 (a patient or nurse): row B, audit.

    Before head-first locking T1 held the head waiting for B while T2 held B waiting for the head:
    PostgreSQL aborted one of them with 40P01. Now T2 waits for the head before touching B.
    """
    a_id, b_id = two_timepoints
    t1_has_head = threading.Event()
    t2_pid: list[int] = []

    def sweep() -> None:
        with Session(pg, info=audit.session_info(AUDIT_KEY)) as session:
            _fast_locks(session)
            _open(session, a_id)
            t1_has_head.set()
            while not t2_pid:
                time.sleep(0.01)
            _wait_until_blocked(pg, t2_pid[0])
            _open(session, b_id)
            session.commit()

    def patient() -> None:
        with Session(pg, info=audit.session_info(AUDIT_KEY)) as session:
            _fast_locks(session)
            t2_pid.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
            assert t1_has_head.wait(WAIT)
            session.execute(
                update(Timepoint).where(Timepoint.id == b_id).values(status="open", status_changed_at=FIXED_NOW)
            )
            audit.record(
                session,
                ACTOR,
                "status",
                entity_type="timepoint",
                entity_id=b_id,
                old={"status": "scheduled"},
                new={"status": "open", "by": "patient"},
                now=FIXED_NOW,
            )
            session.commit()

    errors = _run(sweep, patient)
    assert not errors, [f"{type(e).__name__}: {e}".splitlines()[0] for e in errors]
    with Session(pg, info=audit.session_info(AUDIT_KEY)) as session:
        assert audit.verify(session) == []
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "status").order_by(AuditEvent.id)).all()
        assert sorted(int(e.entity_id) for e in events) == sorted([a_id, b_id, b_id])


def test_head_is_locked_before_the_first_write(pg, two_timepoints):
    """A transaction that has only updated a timepoint already holds the chain head; reads do not."""
    a_id, _b_id = two_timepoints
    with Session(pg, info=audit.session_info(AUDIT_KEY)) as writer, pg.connect() as other:
        writer.scalars(select(Timepoint).where(Timepoint.id == a_id)).one()
        other.execute(LOCK_HEAD_NOWAIT)  # reading locks nothing
        other.rollback()
        writer.execute(update(Timepoint).where(Timepoint.id == a_id).values(status="open"))
        with pytest.raises(OperationalError) as caught:
            other.execute(LOCK_HEAD_NOWAIT)
        assert caught.value.orig.sqlstate == "55P03"  # lock_not_available
        other.rollback()
        writer.rollback()
        other.execute(LOCK_HEAD_NOWAIT)  # released with the transaction
        other.rollback()


def test_select_for_update_counts_as_a_write(pg, two_timepoints):
    a_id, _b_id = two_timepoints
    with Session(pg, info=audit.session_info(AUDIT_KEY)) as writer, pg.connect() as other:
        writer.execute(select(Timepoint.id).where(Timepoint.id == a_id).with_for_update())
        with pytest.raises(OperationalError):
            other.execute(LOCK_HEAD_NOWAIT)
        other.rollback()
        writer.rollback()


def test_head_lock_is_retaken_after_a_rolled_back_savepoint(pg, two_timepoints):
    """ROLLBACK TO SAVEPOINT releases the locks taken inside it, the head's included."""
    a_id, _b_id = two_timepoints
    with Session(pg, info=audit.session_info(AUDIT_KEY)) as writer, pg.connect() as other:
        with pytest.raises(DBAPIError):
            with writer.begin_nested():
                writer.execute(update(Timepoint).where(Timepoint.id == a_id).values(status="open"))
                writer.execute(text("SELECT 1/0"))
        other.execute(LOCK_HEAD_NOWAIT)  # the savepoint took the head with it
        other.rollback()
        writer.execute(update(Timepoint).where(Timepoint.id == a_id).values(status="open"))
        with pytest.raises(OperationalError):
            other.execute(LOCK_HEAD_NOWAIT)
        other.rollback()
        writer.rollback()


def test_first_write_on_an_empty_database_creates_the_head(pg):
    """No head row yet (nothing ever audited): the first writer creates it, so it can lock it."""
    with Session(pg, info=audit.session_info(AUDIT_KEY)) as session:
        assert session.get(AuditChainHead, 1) is None
        session.add(Site(code="E01", name="Empty", timezone="UTC", default_language="en", emergency_phone="120"))
        session.flush()
        with pg.connect() as other:
            with pytest.raises(DBAPIError):  # waits for our uncommitted head: gives up at once
                other.execute(text("SET LOCAL lock_timeout = '50ms'"))
                other.execute(text("INSERT INTO audit_chain_head (id, last_hash, count) VALUES (1, 'x', 0)"))
        audit.record(session, ACTOR, "create", entity_type="site", entity_id=1, now=FIXED_NOW)
        session.commit()
        head = session.get(AuditChainHead, 1)
        assert (head.count, audit.verify(session)) == (1, [])
