"""`qol demo` is one story (issue 14 point 12): the same data on SQLite and PostgreSQL, every
randomized patient planned, and audit times that follow the story, so a past as-of is the past."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pandas as pd
from sqlalchemy import func, select

from qol_app.export.run import ExportRequest, ExportSettings
from qol_app.export.source import ExportFilters
from qol_app.models import Answer, AuditEvent, Patient, Response, Timepoint, TreatmentEvent
from qol_app.services.audit import Actor, verify
from qol_app.services.exports import run_export


def _story(session) -> list[tuple]:
    """The demo's data by natural keys (ids differ between backends whose sequences moved on)."""
    sid = dict(session.execute(select(Patient.id, Patient.study_id)).all())
    rows: list[tuple] = [
        ("patient", p.study_id, p.arm, p.randomization_date, p.status, p.status_date, p.created_at)
        for p in session.scalars(select(Patient))
    ]
    rows += [
        ("event", sid[e.patient_id], e.kind, e.number, e.date, e.created_at)
        for e in session.scalars(select(TreatmentEvent))
    ]
    keys = {}
    for tp in session.scalars(select(Timepoint)):
        keys[tp.id] = (sid[tp.patient_id], tp.key)
        rows.append(
            (
                "tp",
                *keys[tp.id],
                tp.status,
                tp.missed_reason,
                tp.window_start,
                tp.grace_end,
                tp.created_at,
                tp.completed_at,
            )
        )
    forms = {}
    for r in session.scalars(select(Response)):
        forms[r.id] = (*keys[r.timepoint_id], r.instrument_id, r.revision)
        rows.append(("response", *forms[r.id], r.status, r.respondent, r.started_at, r.submitted_at))
    rows += [
        ("answer", *forms[a.response_id], a.item_id, a.value, a.skipped, a.answered_at)
        for a in session.scalars(select(Answer))
    ]
    rows += [
        ("audit", a.occurred_at, a.actor_type, a.action, a.entity_type, sid.get(a.patient_id))
        for a in session.scalars(select(AuditEvent))
    ]
    return sorted(rows, key=repr)


def test_demo_is_one_story_on_every_database(app, session, database_url, seen_across_backends, tmp_path):
    result = app.test_cli_runner().invoke(args=["demo", "--patients", "12"])
    assert result.exit_code == 0, result.output
    now = app.config["FROZEN_NOW"]

    # every randomized patient has planned timepoints
    without = session.scalars(
        select(Patient.study_id).where(~select(Timepoint.id).where(Timepoint.patient_id == Patient.id).exists())
    ).all()
    assert without == []

    # audit times follow the story: enrolled on the randomization day, events on their day
    for p in session.scalars(select(Patient)):
        enrolled = session.scalars(
            select(AuditEvent).where(AuditEvent.patient_id == p.id, AuditEvent.action == "enroll")
        ).one()
        assert enrolled.occurred_at == p.created_at
        assert p.created_at.date() <= p.randomization_date <= (p.created_at + dt.timedelta(days=1)).date()
    for e in session.scalars(select(TreatmentEvent)):
        assert e.created_at <= now and abs((e.created_at.date() - e.date).days) <= 1
    times = session.scalars(select(AuditEvent.occurred_at)).all()
    assert min(times) < now - dt.timedelta(days=60) and max(times) <= now
    assert (
        session.scalar(select(func.count()).select_from(Timepoint).where(Timepoint.missed_reason == "not_offered")) == 0
    )
    assert verify(session) == []

    # a past as-of shows the trial as it was: only patients enrolled by then, forms answered by then
    as_of = now - dt.timedelta(days=60)
    request = ExportRequest(formats=("csv",), filters=ExportFilters(), as_of=as_of)
    out = run_export(
        session, request, tmp_path / "past", actor=Actor.system("tests"), now=now, settings=ExportSettings()
    )
    archive = zipfile.ZipFile(out.zip_path)
    patients = pd.read_csv(io.BytesIO(archive.read("patients.csv")), dtype=str, keep_default_na=False)
    enrolled_then = {p.study_id for p in session.scalars(select(Patient).where(Patient.created_at <= as_of))}
    assert enrolled_then and set(patients["patient_id"]) == enrolled_then
    forms = pd.read_csv(io.BytesIO(archive.read("forms.csv")), dtype=str, keep_default_na=False)
    assert (forms["status"] == "completed").sum() > 0

    # the same story on SQLite and PostgreSQL (the second backend to run compares with the first)
    story = _story(session)
    backend = database_url.split(":", 1)[0]
    for other, seen in seen_across_backends.items():
        if other != backend:
            assert story == seen, f"the demo differs between {other} and {backend}"
    seen_across_backends[backend] = story
