"""A page save racing a submit: the form's lock orders them, and the time is read after the lock.

Real concurrent transactions on each database. The save takes the form's lock and holds it
(paused inside its clock read); the submit must then wait for the lock *before* it reads the
time, so the submission is never stamped before an answer saved by whoever held the lock, and
no answer slips in after the form was sent. Removing the lock, or reading the clock before it,
makes the submit run (or read its time) while the save still holds the form.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from qol_app.db import db
from qol_app.models import Answer, Response
from qol_app.services import audit, responses
from qol_app.services.audit import Actor
from tests.conftest import AUDIT_KEY, FIXED_NOW
from tests.factories import Factory

WAIT = 15


@pytest.fixture
def form(committing_app):
    factory = Factory(db.session, FIXED_NOW)
    enrolled = factory.patient(pin=None, language="en")
    tp = factory.timepoint(enrolled, instruments=["eq5d5l"], respondent="self")
    actor = Actor("patient", str(enrolled.patient.id))
    texts = responses.localized(db.session, responses.registry().get("eq5d5l"), "en")
    response = responses.start_response(db.session, actor, tp, texts, FIXED_NOW)
    responses.save_page(db.session, actor, response, ["mo", "sc"], {"mo": 1, "sc": 1}, FIXED_NOW)
    db.session.commit()
    return committing_app, enrolled.patient.id, response.id


def _blocked(engine, pid: int | None) -> None:
    """Return once the other transaction waits for a lock (PostgreSQL), or after a moment (SQLite)."""
    if pid is None:
        time.sleep(0.5)  # SQLite's busy handler waits inside the library: nothing to observe
        return
    deadline = time.monotonic() + WAIT
    with engine.connect() as monitor:
        while time.monotonic() < deadline:
            state = monitor.execute(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar()
            monitor.rollback()
            if state == "Lock":
                return
            time.sleep(0.01)
    raise AssertionError("the submit never waited for the form's lock")


def test_a_submit_waits_for_a_save_and_reads_the_time_after_it(form):
    app, patient_id, response_id = form
    engine = app.extensions["qol_db"]["engine"]
    actor = Actor("patient", str(patient_id))
    save_locked, release_save = threading.Event(), threading.Event()
    submit_clock_read, errors = threading.Event(), []
    submit_pid: list[int | None] = []
    submit_started = threading.Event()

    def save_clock() -> dt.datetime:
        save_locked.set()  # called once the save holds the form (if the lock comes first)
        assert release_save.wait(WAIT)
        return dt.datetime.now(dt.UTC)

    def submit_clock() -> dt.datetime:
        submit_clock_read.set()
        return dt.datetime.now(dt.UTC)

    def run(job) -> None:
        try:
            with app.app_context(), Session(engine, info=audit.session_info(AUDIT_KEY)) as session:
                job(session)
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def save(session) -> None:
        response = session.get(Response, response_id)
        responses.save_page(session, actor, response, ["vas"], {"vas": 55}, save_clock)

    def submit(session) -> None:
        pid = None
        if session.get_bind().dialect.name == "postgresql":  # the connection this transaction runs on
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        submit_pid.append(pid)
        response = session.get(Response, response_id)
        patient = response.timepoint.patient
        submit_started.set()
        responses.submit(session, actor, response, patient, submit_clock)

    saver = threading.Thread(target=run, args=(save,), daemon=True)
    saver.start()
    assert save_locked.wait(WAIT), errors
    submitter = threading.Thread(target=run, args=(submit,), daemon=True)
    submitter.start()
    assert submit_started.wait(WAIT), errors
    _blocked(engine, submit_pid[0])
    try:
        assert not submit_clock_read.is_set(), "the submit read its time before it had the form's lock"
        assert submitter.is_alive(), "the submit ran while the save still held the form"
    finally:
        release_save.set()
        saver.join(WAIT)
        submitter.join(WAIT)
    assert not errors, errors
    with Session(engine) as session:
        sent = session.get(Response, response_id)
        answers = {a.item_id: a for a in session.scalars(select(Answer).where(Answer.response_id == response_id))}
    assert sent.status == "submitted" and answers["vas"].value == 55
    assert all(a.answered_at <= sent.submitted_at for a in answers.values())


def test_a_save_after_the_submit_is_refused_and_stores_nothing(form):
    app, patient_id, response_id = form
    engine = app.extensions["qol_db"]["engine"]
    actor = Actor("patient", str(patient_id))
    with app.app_context(), Session(engine, info=audit.session_info(AUDIT_KEY)) as session:
        response = session.get(Response, response_id)
        responses.submit(session, actor, response, response.timepoint.patient, FIXED_NOW)
        session.commit()
    with app.app_context(), Session(engine, info=audit.session_info(AUDIT_KEY)) as session:
        response = session.get(Response, response_id)
        with pytest.raises(responses.AlreadySubmitted):
            responses.save_page(session, actor, response, ["ad"], {"ad": 3}, FIXED_NOW + dt.timedelta(seconds=1))
        session.rollback()
        items = set(session.scalars(select(Answer.item_id).where(Answer.response_id == response_id)))
    assert "ad" in items and items >= {"mo", "sc"}  # 'ad' exists only as the submit's explicit skip
    with Session(engine) as session:
        ad = session.scalar(select(Answer).where(Answer.response_id == response_id, Answer.item_id == "ad"))
        assert ad.skipped and ad.value is None
