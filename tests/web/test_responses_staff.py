"""Staff side of responses and alerts: corrections as new revisions, paper entry, acknowledge, escalate."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from qol_app.models import (
    Alert,
    Answer,
    AuditEvent,
    OutboxMessage,
    Response,
    Score,
    SiteMembership,
    StaffUser,
)
from qol_app.scoring import score
from qol_app.services import alerts, responses
from qol_app.services.audit import Actor

C30 = "eortc_qlq_c30"
C30_ANSWERS = {f"q{i}": 2 for i in range(1, 29)} | {"q29": 4, "q30": 4}


def staff(session, role, sites, **kw):
    user = StaffUser(
        username=f"{role}-{uuid.uuid4().hex[:8]}", full_name="Test", role=role, password_hash="unused", **kw
    )
    user.memberships = [SiteMembership(site_id=s.id) for s in sites]
    session.add(user)
    session.flush()
    return user


def _submitted(session, factory, now, instrument=C30, answers=C30_ANSWERS, **patient_kw):
    enrolled = factory.patient(pin=None, **patient_kw)
    tp = factory.timepoint(enrolled, instruments=[instrument], respondent="self")
    actor = Actor("patient", str(enrolled.patient.id))
    texts = responses.localized(session, responses.registry().get(instrument), enrolled.patient.language)
    response = responses.start_response(session, actor, tp, texts, now)
    items = responses.presented_items(responses.registry().get(instrument), enrolled.patient)
    responses.save_page(session, actor, response, items, answers, now, skip=items)
    result = responses.submit(session, actor, response, enrolled.patient, now)
    return enrolled, tp, result


def test_correction_is_a_new_revision_and_the_original_is_untouched(session, factory, now):
    enrolled, _tp, result = _submitted(session, factory, now)
    original = result.response
    nurse = staff(session, "nurse", [enrolled.patient.site])
    later = now + dt.timedelta(days=1)
    fixed = responses.correct_response(
        session, nurse, original, {"q29": 6, "q5": None}, "patient told the nurse item 29 was mis-tapped", later
    )
    assert (fixed.revision, fixed.supersedes_id, fixed.entered_by, fixed.status) == (
        1,
        original.id,
        nurse.id,
        "submitted",
    )
    new_answers = {a.item_id: a.value for a in session.scalars(select(Answer).where(Answer.response_id == fixed.id))}
    assert new_answers["q29"] == 6 and new_answers["q5"] is None and new_answers["q1"] == 2
    old_answers = {a.item_id: a.value for a in session.scalars(select(Answer).where(Answer.response_id == original.id))}
    assert old_answers["q29"] == 4 and old_answers["q5"] == 2
    scores = {s.scale: s.value for s in session.scalars(select(Score).where(Score.response_id == fixed.id))}
    typed = {k: (None if v is None else int(v)) for k, v in new_answers.items()}
    assert scores == score(C30, typed)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "correct_response"))
    assert event.actor_type == "staff" and event.reason.startswith("patient told")
    assert event.old["q29"] == 4 and event.new["q29"] == 6
    with pytest.raises(ValueError, match="superseded"):
        responses.correct_response(session, nurse, original, {"q1": 1}, "again", later)


def test_correction_needs_reason_site_and_valid_answers(session, factory, now):
    enrolled, _tp, result = _submitted(session, factory, now)
    outsider = staff(session, "nurse", [factory.site()])
    nurse = staff(session, "nurse", [enrolled.patient.site])
    with pytest.raises(PermissionError):
        responses.correct_response(session, outsider, result.response, {"q1": 1}, "typo", now)
    with pytest.raises(ValueError, match="reason"):
        responses.correct_response(session, nurse, result.response, {"q1": 1}, "  ", now)
    with pytest.raises(ValueError, match="q1"):
        responses.correct_response(session, nurse, result.response, {"q1": 9}, "typo", now)


def test_paper_form_entered_on_behalf(session, factory, now):
    enrolled = factory.patient(pin=None)
    tp = factory.timepoint(enrolled)
    nurse = staff(session, "nurse", [enrolled.patient.site])
    result = responses.enter_on_behalf(
        session,
        nurse,
        tp,
        C30,
        {"q1": 3, "q2": 2},
        now,
        mode="paper_transcribed",
        respondent="proxy",
        relationship="child",
        completed_on=tp.window_start,
    )
    response = result.response
    assert (response.completed_on, response.submitted_at) == (tp.window_start, now)
    assert (
        response.mode,
        response.entered_by,
        response.respondent,
        response.respondent_relationship,
        response.status,
    ) == ("paper_transcribed", nurse.id, "proxy", "child", "submitted")
    rows = session.scalars(select(Answer).where(Answer.response_id == response.id)).all()
    assert len(rows) == 30 and sum(not r.skipped for r in rows) == 2
    assert tp.status == "completed"
    with pytest.raises(responses.AlreadySubmitted):
        responses.enter_on_behalf(session, nurse, tp, C30, {}, now, mode="interview", respondent="self")
    with pytest.raises(ValueError, match="mode"):
        responses.enter_on_behalf(
            session, nurse, factory.timepoint(enrolled), C30, {}, now, mode="web", respondent="self"
        )


def test_acknowledge_once_and_skip_unsent_notifications(session, factory, now):
    site = factory.site()
    nurse = staff(session, "nurse", [site], email="n@example.org")
    _enrolled, _tp, result = _submitted(session, factory, now, "symptom_diary", {"seizure": 1}, site=site)
    alert = result.alert
    assert alert.level == "red"
    assert session.scalar(select(OutboxMessage.status)) == "queued"
    actor = Actor("staff", str(nurse.id))
    assert alerts.acknowledge(session, actor, alert, nurse, "called patient, sent to A&E", now) is True
    assert (alert.acknowledged_by, alert.action_taken) == (nurse.id, "called patient, sent to A&E")
    assert session.scalar(select(OutboxMessage.status)) == "skipped"
    assert alerts.acknowledge(session, actor, alert, nurse, "again", now) is False
    assert alert.action_taken == "called patient, sent to A&E"
    with pytest.raises(PermissionError):
        alerts.acknowledge(session, actor, alert, staff(session, "nurse", [factory.site()]), "x", now)


def test_unacknowledged_amber_escalates_once(session, factory, now):
    site = factory.site()
    nurse = staff(session, "nurse", [site], email="n@example.org")
    _, _, result = _submitted(session, factory, now, "symptom_diary", {"headache": 3}, site=site)
    alert = result.alert
    assert alert.level == "amber"
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert alerts.escalate_overdue(session, now + dt.timedelta(hours=23)) == 0
    assert alerts.escalate_overdue(session, now + dt.timedelta(hours=24)) == 1
    session.refresh(alert)
    assert (alert.level, alert.initial_level, alert.escalated_at) == ("red", "amber", now + dt.timedelta(hours=24))
    assert session.scalar(select(OutboxMessage.dedupe_key)) == f"alert:{alert.id}:{nurse.id}:email"
    assert alerts.escalate_overdue(session, now + dt.timedelta(hours=30)) == 0
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_acknowledged_amber_does_not_escalate(session, factory, now):
    site = factory.site()
    nurse = staff(session, "nurse", [site])
    _, _, result = _submitted(session, factory, now, "symptom_diary", {"vomiting": 4}, site=site)
    alerts.acknowledge(session, Actor("staff", str(nurse.id)), result.alert, nurse, "phoned", now)
    assert alerts.escalate_overdue(session, now + dt.timedelta(days=3)) == 0
    assert session.get(Alert, result.alert.id).level == "amber"


def test_only_diaries_raise_alerts(session, factory, now):
    _, _, result = _submitted(session, factory, now)
    assert result.alert is None and session.scalar(select(func.count()).select_from(Alert)) == 0
    assert session.scalar(select(func.count()).select_from(Response)) == 1
