"""`qol rescore`: recomputes stored scores, reports changes, audits them, and is idempotent."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from qol_app.models import Answer, AuditEvent, Response, Score, Timepoint
from qol_app.scoring import SCORING_VERSION, score

C30 = {f"q{i}": (2 if i < 29 else 5) for i in range(1, 31)}


def _submitted_c30(session, patient, now, answers=C30, key="baseline"):
    day = now.date()
    tp = Timepoint(
        patient_id=patient.id,
        key=key,
        rule_id="baseline",
        kind="questionnaire",
        instruments=["eortc_qlq_c30"],
        anchor_kind="randomization",
        anchor_date=day,
        target_date=day,
        window_start=day,
        window_end=day,
        grace_end=day,
        opens_at=now,
        closes_at=now + dt.timedelta(days=1),
        grace_closes_at=now + dt.timedelta(days=1),
        status="completed",
        created_at=now,
    )
    session.add(tp)
    session.flush()
    response = Response(
        timepoint_id=tp.id,
        patient_id=patient.id,
        instrument_id="eortc_qlq_c30",
        instrument_version="3.0",
        language="en",
        wording_version="own-descriptive:3.0",
        respondent="self",
        mode="web",
        status="submitted",
        started_at=now,
        submitted_at=now,
    )
    session.add(response)
    session.flush()
    for item_id, value in answers.items():
        session.add(
            Answer(response_id=response.id, item_id=item_id, value=value, skipped=value is None, answered_at=now)
        )
    session.flush()
    return response


def _stored(session, response):
    return dict(session.execute(select(Score.scale, Score.value).where(Score.response_id == response.id)).all())


def test_rescore_fills_fixes_and_is_idempotent(app, factory, session, now):
    patient = factory.patient().patient
    response = _submitted_c30(session, patient, now)
    runner = app.test_cli_runner()

    first = runner.invoke(args=["rescore"])
    assert first.exit_code == 0, first.output
    assert "1 forms rescored: 1 changed (16 scores)" in first.output
    assert _stored(session, response) == score("eortc_qlq_c30", C30)

    session.execute(update(Score).where(Score.response_id == response.id, Score.scale == "PF2").values(value=0.0))
    second = runner.invoke(args=["rescore"])
    assert "1 changed (1 scores)" in second.output
    assert _stored(session, response)["PF2"] == score("eortc_qlq_c30", C30)["PF2"]
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "rescore_batch").order_by(AuditEvent.id.desc())
    ).first()
    form = next(iter(event.new["forms"].values()))
    assert form["old"]["scores"] == {"PF2": 0.0}
    assert form["new"]["scoring_version"] == SCORING_VERSION

    third = runner.invoke(args=["rescore"])
    assert "0 changed" in third.output
    assert session.scalars(select(AuditEvent.action).where(AuditEvent.action == "rescore")).all() == ["rescore"] * 3


def test_rescore_keeps_missing_scales_missing(app, factory, session, now):
    patient = factory.patient().patient
    sparse = dict(C30, q21=None, q22=None, q23=None)  # EF: 1 of 4 answered -> below the half rule
    response = _submitted_c30(session, patient, now, answers=sparse)
    app.test_cli_runner().invoke(args=["rescore"])
    stored = _stored(session, response)
    assert stored["EF"] is None and stored["SUMSC"] is None
    n_items = dict(session.execute(select(Score.scale, Score.n_items).where(Score.response_id == response.id)).all())
    assert n_items["EF"] == 1


def test_unscorable_form_is_flagged_not_lost(app, factory, session, now):
    patient = factory.patient().patient
    response = _submitted_c30(session, patient, now)
    session.execute(update(Response).where(Response.id == response.id).values(instrument_version="2.0"))
    result = app.test_cli_runner().invoke(args=["rescore"])
    assert "1 could not be scored" in result.output
    session.refresh(response)
    assert "unsupported version" in response.scoring_error
    assert session.scalar(select(Answer.id).where(Answer.response_id == response.id)) is not None
