"""Reconcile on the database: events and status changes move, cancel and keep timepoints."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from qol_app.db import db
from qol_app.models import AuditEvent, OutboxMessage, Patient, Response, Timepoint, TreatmentEvent
from qol_app.services import audit, compliance, locks, timepoints, treatment_events
from qol_app.services.audit import Actor, verify
from tests.conftest import AUDIT_KEY, FIXED_NOW
from tests.db.conftest import audit_count, timepoints_of
from tests.factories import Factory

D = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
RAND = dt.date(2026, 3, 2)
C1 = dt.date(2026, 3, 3)
NURSE = Actor("staff", None)
SCHEDULER = timepoints.SCHEDULER


@pytest.fixture
def patient(factory):
    return factory.patient(arm="B", randomization_date=RAND, phone="13800000001").patient


@pytest.fixture
def cycle(session, patient, now):
    event, _ = treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=C1, now=now)
    return event


def _audits(session, action=None):
    query = select(AuditEvent).where(AuditEvent.entity_type == "timepoint").order_by(AuditEvent.id)
    if action:
        query = query.where(AuditEvent.action == action)
    return session.scalars(query).all()


def test_recording_a_cycle_creates_its_timepoints_with_audit(session, patient, cycle, now):
    tps = timepoints_of(session, patient)
    assert set(tps) == {"baseline", "sys-c1", *(f"diary-2026-03-{d}" for d in range(10, 18))}
    c1 = tps["sys-c1"]
    # cycle day 21 (the administration day is day 1): C1 + 20, window -3 ... +3
    assert (c1.target_date, c1.window_start, c1.window_end) == (C1 + 20 * D, C1 + 17 * D, C1 + 23 * D)
    assert c1.anchor_event_id == cycle.id and c1.anchor_number == 1 and cycle.number == 1
    assert c1.status == "scheduled" and tps["diary-2026-03-10"].status == "open"
    # its grace ended before the app knew the patient: never offered, an administrative miss
    assert (tps["baseline"].status, tps["baseline"].missed_reason) == ("missed", "not_offered")
    created = _audits(session, "create")
    assert len(created) == len(tps)
    assert all(a.patient_id == patient.id and a.site_id == patient.site_id for a in created)
    assert sorted((a.entity_id, a.new["key"]) for a in created) == sorted((str(tp.id), k) for k, tp in tps.items())
    assert any(a.new["key"] == "sys-c1" and a.new["window_end"] == "2026-03-26" for a in created)
    assert verify(session) == []


def test_second_reconcile_writes_nothing(session, patient, cycle, now):
    session.flush()
    before = audit_count(session)
    snapshot = {k: (tp.status, tp.window_start, tp.opens_at) for k, tp in timepoints_of(session, patient).items()}
    result = timepoints.reconcile_patient(session, NURSE, patient, now + dt.timedelta(hours=5))
    assert result.changed == 0
    assert audit_count(session) == before
    assert {
        k: (tp.status, tp.window_start, tp.opens_at) for k, tp in timepoints_of(session, patient).items()
    } == snapshot


def test_delayed_cycle_moves_its_questionnaire_with_reason(session, patient, cycle, now):
    result = treatment_events.move_event(
        session, NURSE, cycle, date=C1 + 4 * D, reason="neutropenia, given late", now=now + 4 * D
    )
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert c1.target_date == C1 + 24 * D and c1.status == "scheduled"
    assert result.moved >= 1
    move = next(a for a in _audits(session, "move") if a.new["key"] == "sys-c1")
    assert move.reason == "neutropenia, given late"
    assert move.old["target_date"] == "2026-03-23" and move.new["target_date"] == "2026-03-27"
    event_audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "move_event")).one()
    assert event_audit.old == {"date": "2026-03-03"} and event_audit.new == {"date": "2026-03-07"}


def test_longer_cycle_moves_the_post_cycle_form(session, patient, cycle, now):
    treatment_events.move_event(session, NURSE, cycle, cycle_length_days=28, reason="28-day regimen", now=now)
    assert timepoints_of(session, patient)["sys-c1"].target_date == C1 + 27 * D  # day 28 of a 28-day cycle


def test_deleted_event_cancels_its_timepoints_with_reason(session, patient, cycle, now):
    treatment_events.delete_event(session, NURSE, cycle, reason="entered for the wrong patient", now=now)
    tps = timepoints_of(session, patient)
    assert tps["sys-c1"].status == "cancelled"
    assert tps["sys-c1"].cancel_reason == "anchor_event_deleted"
    assert tps["baseline"].status == "missed"  # randomization-anchored: untouched
    cancels = _audits(session, "cancel")
    assert {a.new["key"] for a in cancels} >= {"sys-c1", "diary-2026-03-11"}
    assert all(a.reason == "entered for the wrong patient" for a in cancels)
    assert cycle.deleted_at == now and cycle.deleted_reason == "entered for the wrong patient"


def _begin_diary(session, diary, now):
    """The patient opened the diary day and saved nothing yet: a begun (unsent) response row."""
    session.add(
        Response(
            timepoint_id=diary.id,
            patient_id=diary.patient_id,
            instrument_id="symptom_diary",
            instrument_version="1",
            language="zh_Hans",
            wording_version="own",
            respondent="self",
            started_at=now,
        )
    )


@pytest.mark.parametrize("how", ["started_at", "response_row"])
def test_started_forms_are_never_moved_or_cancelled(session, patient, cycle, now, how):
    diary = timepoints_of(session, patient)["diary-2026-03-10"]
    if how == "started_at":
        diary.started_at = now
    else:
        _begin_diary(session, diary, now)
    session.flush()
    treatment_events.delete_event(session, NURSE, cycle, reason="wrong date", now=now)
    tps = timepoints_of(session, patient)
    assert tps["diary-2026-03-10"].status == "open" and tps["diary-2026-03-10"].cancel_reason is None
    assert tps["diary-2026-03-11"].status == "cancelled"


def test_completed_forms_stay_when_the_cycle_moves(session, patient, cycle, now):
    diary = timepoints_of(session, patient)["diary-2026-03-10"]
    diary.completed_at = now
    diary.status = "completed"
    session.flush()
    treatment_events.move_event(session, NURSE, cycle, date=C1 + 2 * D, reason="date typo", now=now)
    tps = timepoints_of(session, patient)
    assert tps["diary-2026-03-10"].status == "completed"
    assert tps["diary-2026-03-10"].anchor_date == C1  # not re-anchored either


def test_death_makes_later_timepoints_not_expected_never_missed(session, patient, cycle, now):
    treatment_events.set_patient_status(
        session, NURSE, patient, "died", status_date=dt.date(2026, 3, 12), reason="reported by family", now=now + 3 * D
    )
    tps = timepoints_of(session, patient)
    assert tps["sys-c1"].status == "not_expected" and tps["sys-c1"].not_expected_reason == "died"
    assert tps["diary-2026-03-13"].status == "not_expected"
    # Still open on the day of death (the 11th in its grace day): not expected either.
    assert tps["diary-2026-03-12"].not_expected_reason == tps["diary-2026-03-11"].not_expected_reason == "died"
    assert tps["diary-2026-03-10"].not_expected_reason is None  # closed before: a miss stays a miss
    # Weeks later the sweep turns nothing that was not expected into missed.
    timepoints.sweep_statuses(session, now + 60 * D)
    tps = timepoints_of(session, patient)
    assert all(tps[k].status == "not_expected" for k in ("sys-c1", *(f"diary-2026-03-{d}" for d in range(13, 18))))
    status_audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "set_status")).one()
    assert status_audit.new["status"] == "died" and status_audit.reason == "reported by family"


def test_death_skips_queued_reminders_and_revival_reactivates(session, patient, cycle, now):
    session.add(
        OutboxMessage(
            dedupe_key="tp:x:r1:sms",
            kind="reminder",
            channel="sms",
            recipient="138",
            patient_id=patient.id,
            language="zh_Hans",
            subject="s",
            body="b",
            created_at=now,
        )
    )
    session.flush()
    treatment_events.set_patient_status(
        session, NURSE, patient, "withdrawn", status_date=dt.date(2026, 3, 10), reason="consent withdrawn", now=now
    )
    message = session.scalars(select(OutboxMessage)).one()
    assert (message.status, message.last_error) == ("skipped", "patient withdrawn")
    result = treatment_events.set_patient_status(session, NURSE, patient, "active", reason="entered in error", now=now)
    assert result.reactivated >= 1
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert c1.status == "scheduled" and c1.not_expected_reason is None


def test_event_validation(session, patient, cycle, now):
    with pytest.raises(ValueError, match="future"):
        treatment_events.record_event(session, NURSE, patient, kind="progression", date=dt.date(2026, 3, 11), now=now)
    with pytest.raises(ValueError, match="before randomization"):
        treatment_events.record_event(session, NURSE, patient, kind="progression", date=dt.date(2026, 2, 1), now=now)
    with pytest.raises(ValueError, match="already recorded"):
        treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", number=1, date=C1, now=now)
    with pytest.raises(ValueError, match="reason"):
        treatment_events.move_event(session, NURSE, cycle, date=C1 + D, reason="  ", now=now)
    with pytest.raises(ValueError, match="date"):
        treatment_events.set_patient_status(session, NURSE, patient, "died", reason="x", now=now)
    treatment_events.record_event(session, NURSE, patient, kind="end_of_treatment", date=dt.date(2026, 3, 9), now=now)
    with pytest.raises(ValueError, match="already recorded"):
        treatment_events.record_event(
            session, NURSE, patient, kind="end_of_treatment", date=dt.date(2026, 3, 10), now=now
        )


def test_numbers_are_assigned_so_keys_stay_stable(session, patient, cycle, now):
    second, _ = treatment_events.record_event(
        session, NURSE, patient, kind="systemic_cycle", date=dt.date(2026, 3, 9), now=now
    )
    assert second.number == 2
    assert "sys-c2" in timepoints_of(session, patient)


def test_follow_ups_are_extended_by_the_sweep_only_when_due(session, patient, cycle, now):
    treatment_events.record_event(session, NURSE, patient, kind="end_of_treatment", date=dt.date(2026, 3, 9), now=now)
    keys = set(timepoints_of(session, patient))
    assert "eot" in keys and not any(k.startswith("fu-") for k in keys)  # fu-1 is 58 days out
    assert patient.id not in timepoints.patients_due_for_reconcile(session, now)
    later = now + 20 * D  # fu-1 window starts 9 Mar + 51 days = 29 Apr; horizon = 30 Mar + 35 days
    result = timepoints.reconcile_all(session, later)
    assert result.patients == 1 and result.changes.created == 1
    assert "fu-1" in timepoints_of(session, patient)
    before = audit_count(session)
    assert timepoints.patients_due_for_reconcile(session, later) == []
    assert timepoints.reconcile_all(session, later).patients == 0
    assert audit_count(session) == before
    assert patient.id in timepoints.patients_due_for_reconcile(session, later + 28 * D)


def test_patients_without_any_timepoint_are_reconciled(session, factory, now):
    fresh = factory.patient(arm="A", randomization_date=dt.date(2026, 3, 10)).patient
    assert fresh.id in timepoints.patients_due_for_reconcile(session, now)
    timepoints.reconcile_all(session, now)
    assert timepoints_of(session, fresh)["baseline"].status == "open"
    assert fresh.id not in timepoints.patients_due_for_reconcile(session, now)


def test_the_sweep_replans_each_patient_on_the_day_the_calendar_changes_its_plan(session, factory, now):
    """Daily sweeps over five months: after each, every patient's rows match a fresh plan (none
    missed), and the sweep replanned only patients whose plan had changed (none for nothing)."""
    site = factory.site(code="RP1")
    patients = [factory.patient(site, arm=arm, randomization_date=RAND).patient for arm in "ABB"]
    for patient, days_ago in zip(patients, (1, 4, 6), strict=True):
        timepoints.reconcile_patient(session, NURSE, patient, now)
        treatment_events.record_event(
            session, NURSE, patient, kind="end_of_treatment", date=(now - days_ago * D).date(), now=now
        )
    dying = patients[2]
    schedule = timepoints.configured_schedule()
    replanned = 0
    for day in range(150):
        at = now + day * D
        if day == 60:
            treatment_events.set_patient_status(
                session, NURSE, dying, "died", status_date=at.date(), reason="reported by family", now=at
            )
            assert dying.replan_at is None  # nothing more comes by itself
        result = timepoints.reconcile_all(session, at)
        assert result.errors == []
        assert result.changes.created >= result.patients, f"day {day}: a patient replanned for nothing"
        replanned += result.patients
        for patient in patients:
            preview = timepoints.preview_patient(session, patient, at, schedule, None)
            assert not preview.changes.has_changes, f"day {day}: the sweep missed {patient.study_id}"
    fus = {p.study_id: sorted(k for k in timepoints_of(session, p) if k.startswith("fu-")) for p in patients}
    assert [len(keys) for keys in fus.values()] == [5, 5, 2], fus  # fu-k opens to view 16 + 28(k-1) days after EOT
    assert replanned == 12


def test_concurrently_created_row_counts_as_done(session, patient, now, monkeypatch, caplog):
    assert timepoints.reconcile_patient(session, NURSE, patient, now).created == 1
    baseline = timepoints_of(session, patient)["baseline"]
    copy = {
        c: getattr(baseline, c)
        for c in (
            "patient_id",
            "key",
            "rule_id",
            "kind",
            "instruments",
            "anchor_kind",
            "anchor_date",
            "target_date",
            "window_start",
            "window_end",
            "grace_end",
            "opens_at",
            "closes_at",
            "grace_closes_at",
            "status",
        )
    }
    session.delete(baseline)
    session.flush()
    real_diff = timepoints.diff

    def racing_diff(existing, planned, **kwargs):
        """diff() saw no row; meanwhile another transaction inserts the same key."""
        session.add(Timepoint(**copy))
        session.flush()
        return real_diff([], planned, **kwargs)

    monkeypatch.setattr(timepoints, "diff", racing_diff)
    before = audit_count(session)
    with caplog.at_level(logging.INFO, logger="qol_app.services.timepoints"):
        result = timepoints.reconcile_patient(session, NURSE, patient, now)
    assert result.created == 0 and audit_count(session) == before
    assert f"timepoint {patient.id}/baseline was created concurrently; skipping" in caplog.messages
    assert session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id)).one().key == "baseline"


def test_a_cycle_moved_back_reopens_its_cancelled_diary_days_and_the_counts_match_the_audit(
    session, patient, cycle, now
):
    """Cycle 1 entered two days late, then back: the nadir-diary days the first move dropped come
    back live without the cancellation reason, the days both plans share follow the cycle's date
    (re-anchored), and each reported count equals its audit rows."""
    later = treatment_events.move_event(session, NURSE, cycle, date=C1 + 2 * D, reason="date typo", now=now)
    tps = timepoints_of(session, patient)
    assert [(tps[f"diary-2026-03-{d}"].status, tps[f"diary-2026-03-{d}"].cancel_reason) for d in (10, 11)] == [
        ("cancelled", "no_longer_planned"),
        ("cancelled", "no_longer_planned"),
    ]
    assert {tps[f"diary-2026-03-{d}"].anchor_date for d in range(12, 20)} == {C1 + 2 * D}
    moves = [a.new["key"] for a in _audits(session, "move")]
    assert moves == ["sys-c1", *(f"diary-2026-03-{d}" for d in range(12, 18))]
    assert (later.created, later.moved, later.cancelled, later.reactivated) == (2, 7, 2, 0)

    back = treatment_events.move_event(session, NURSE, cycle, date=C1, reason="typo corrected", now=now)
    tps = timepoints_of(session, patient)
    assert (back.created, back.moved, back.cancelled, back.reactivated) == (0, 7, 2, 2)
    assert len(_audits(session, "move")) == 14
    assert (tps["diary-2026-03-10"].status, tps["diary-2026-03-10"].cancel_reason) == ("open", None)
    assert (tps["diary-2026-03-11"].status, tps["diary-2026-03-11"].cancel_reason) == ("scheduled", None)
    assert [tps[f"diary-2026-03-{d}"].status for d in (18, 19)] == ["cancelled", "cancelled"]
    assert {tps[f"diary-2026-03-{d}"].anchor_date for d in range(10, 18)} == {C1}
    assert tps["sys-c1"].target_date == C1 + 20 * D
    reactivations = _audits(session, "reactivate")
    assert sorted(a.new["key"] for a in reactivations) == ["diary-2026-03-10", "diary-2026-03-11"]
    assert all(a.old["cancel_reason"] == "no_longer_planned" and a.new["cancel_reason"] is None for a in reactivations)


def test_a_death_recorded_late_marks_a_follow_up_beyond_the_plan_not_expected(session, patient, cycle, now):
    """Death entered weeks later with its real (earlier) date: the follow-up already created is
    past what the plan now reaches but after the death, so it is kept as not expected (never
    cancelled, never missed), like the post-cycle form; each mark has its own audit row."""
    treatment_events.record_event(session, NURSE, patient, kind="end_of_treatment", date=dt.date(2026, 3, 9), now=now)
    timepoints.reconcile_all(session, now + 20 * D)
    assert timepoints_of(session, patient)["fu-1"].status == "scheduled"
    result = treatment_events.set_patient_status(
        session, NURSE, patient, "died", status_date=dt.date(2026, 3, 10), reason="reported late", now=now + 25 * D
    )
    tps = timepoints_of(session, patient)
    for key in ("fu-1", "eot", "sys-c1"):
        assert (tps[key].status, tps[key].not_expected_reason, tps[key].cancel_reason) == ("not_expected", "died", None)
    marks = {a.new["key"]: a for a in _audits(session, "not_expected")}
    assert {"fu-1", "eot", "sys-c1"} <= set(marks)
    assert result.not_expected == len(marks)
    assert marks["fu-1"].old == {"status": "scheduled", "not_expected_reason": None}
    assert marks["fu-1"].new == {"key": "fu-1", "status": "not_expected", "not_expected_reason": "died"}
    assert marks["sys-c1"].new["not_expected_reason"] == "died"
    assert {a.reason for a in marks.values()} == {"patient died"}


def test_a_form_corrected_into_a_past_never_open_is_missed_not_offered_until_it_moves_back(session, factory, now):
    """CLINICAL.md §2, late entry, for corrections: a post-cycle form moved wholly into a past in
    which the patient never had it open is missed ``not_offered`` (administrative), from the
    instant its grace period closes, through a second correction within the past, until the form
    moves back to the future."""
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 1, 5)).patient
    cycle, _ = treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=C1, now=now)
    assert timepoints_of(session, patient)["sys-c1"].status == "scheduled"  # window 20-26 March
    # 12 February: window 1-7 March, grace until the end of 10 March (Shanghai), i.e. this instant.
    at = dt.datetime(2026, 3, 10, 16, tzinfo=dt.UTC)
    treatment_events.move_event(session, NURSE, cycle, date=dt.date(2026, 2, 12), reason="wrong month", now=at)
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.window_start, c1.window_end, c1.grace_closes_at) == (dt.date(2026, 3, 1), dt.date(2026, 3, 7), at)
    assert (c1.status, c1.missed_reason, c1.status_changed_at) == ("missed", "not_offered", at)
    # A day later, to 13 February (window 2-8 March, grace closing now): the row existed since
    # 10 March, but under dates the patient never had open, so still not offered.
    treatment_events.move_event(session, NURSE, cycle, date=dt.date(2026, 2, 13), reason="one day off", now=at + D)
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.window_start, c1.grace_closes_at) == (dt.date(2026, 3, 2), at + D)
    assert (c1.status, c1.missed_reason) == ("missed", "not_offered")
    treatment_events.move_event(session, NURSE, cycle, date=C1, reason="it was March", now=at + 2 * D)
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.status, c1.missed_reason, c1.status_changed_at) == ("scheduled", None, at + 2 * D)


def test_a_death_before_a_not_offered_form_makes_it_not_expected_without_that_reason(session, factory, now):
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 1, 5)).patient
    cycle, _ = treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=C1, now=now)
    treatment_events.move_event(session, NURSE, cycle, date=dt.date(2026, 2, 11), reason="wrong month", now=now)
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.target_date, c1.status, c1.missed_reason) == (dt.date(2026, 3, 3), "missed", "not_offered")
    treatment_events.set_patient_status(
        session, NURSE, patient, "died", status_date=dt.date(2026, 3, 1), reason="reported by family", now=now + D
    )
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.status, c1.not_expected_reason, c1.missed_reason) == ("not_expected", "died", None)


def test_a_form_the_patient_had_open_stays_a_patient_related_miss_and_keeps_the_nurses_reason(session, factory, now):
    """A post-cycle form open to the patient on a day of its corrected window is missed by the
    patient (the nurse gives the reason), and a further correction keeps the nurse's reason."""
    enrolled = factory.patient(arm="B", randomization_date=dt.date(2026, 1, 5))
    patient = enrolled.patient
    nurse = factory.staff("nurse", sites=[patient.site])
    recorded = now - 6 * D  # 4 March: the form's window (4-10 March) has just opened
    cycle, _ = treatment_events.record_event(
        session, NURSE, patient, kind="systemic_cycle", date=dt.date(2026, 2, 15), now=recorded
    )
    assert timepoints_of(session, patient)["sys-c1"].status == "open"
    treatment_events.move_event(session, NURSE, cycle, date=dt.date(2026, 2, 9), reason="date typo", now=now)
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.window_start, c1.window_end) == (dt.date(2026, 2, 26), dt.date(2026, 3, 4))
    assert (c1.status, c1.missed_reason) == ("missed", None)  # open to the patient on 4 March
    compliance.set_missed_reason(session, NURSE, nurse, c1, "too_ill", None, change_reason=None, now=now)
    treatment_events.move_event(session, NURSE, cycle, date=dt.date(2026, 2, 10), reason="one day off", now=now + D)
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.window_start, c1.status, c1.missed_reason) == (dt.date(2026, 2, 27), "missed", "too_ill")


def test_a_form_open_under_its_old_dates_but_not_on_its_corrected_ones_was_not_offered(session, factory, now):
    """The patient had the post-cycle form open 18-27 February (grace included); the cycle date is
    then corrected so that its window is 28 February - 6 March, days on which the patient never
    had it: not offered."""
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 1, 5)).patient
    recorded = dt.datetime(2026, 2, 20, 4, tzinfo=dt.UTC)
    cycle, _ = treatment_events.record_event(
        session, NURSE, patient, kind="systemic_cycle", date=dt.date(2026, 2, 1), now=recorded
    )
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.window_start, c1.window_end, c1.status) == (dt.date(2026, 2, 18), dt.date(2026, 2, 24), "open")
    treatment_events.move_event(session, NURSE, cycle, date=dt.date(2026, 2, 11), reason="date typo", now=now)
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.window_start, c1.window_end) == (dt.date(2026, 2, 28), dt.date(2026, 3, 6))
    assert (c1.status, c1.missed_reason) == ("missed", "not_offered")


def test_diary_days_reactivated_after_they_closed_were_offered_only_if_live_while_open(session, patient, cycle, now):
    """Cycle 1 moved two days on six hours after it was entered (its first two diary days
    cancelled), then back ten days later: the two days come back after their windows closed. The
    10 March diary was live and open for those six hours, so it is a patient-related miss; the
    11 March one was cancelled before it opened, so it was never offered."""
    treatment_events.move_event(session, NURSE, cycle, date=C1 + 2 * D, reason="date typo", now=now + 6 * HOUR)
    assert timepoints_of(session, patient)["diary-2026-03-11"].status_changed_at == now + 6 * HOUR
    treatment_events.move_event(session, NURSE, cycle, date=C1, reason="typo corrected", now=now + 10 * D)
    tps = timepoints_of(session, patient)
    assert (tps["diary-2026-03-10"].status, tps["diary-2026-03-10"].missed_reason) == ("missed", None)
    assert (tps["diary-2026-03-11"].status, tps["diary-2026-03-11"].missed_reason) == ("missed", "not_offered")
    assert {tps[d].cancel_reason for d in ("diary-2026-03-10", "diary-2026-03-11")} == {None}


def test_a_reconcile_without_a_reason_audits_each_cancellation_with_its_cancel_reason(session, patient, cycle, now):
    cycle.deleted_at = now  # the event gone (as delete_event leaves it), then a plain reconcile
    session.flush()
    timepoints.reconcile_patient(session, NURSE, patient, now)
    cancels = _audits(session, "cancel")
    assert cancels and {a.reason for a in cancels} == {"anchor_event_deleted"}


def test_a_withdrawal_retracted_after_a_forms_window_leaves_it_not_offered(session, patient, cycle, now):
    """Withdrawn on 10 March (the post-cycle form of 20-26 March not expected), recorded as active
    again on 30 March: the form comes back missed, but the patient never had it open."""
    treatment_events.set_patient_status(
        session, NURSE, patient, "withdrawn", status_date=dt.date(2026, 3, 10), reason="consent withdrawn", now=now
    )
    assert timepoints_of(session, patient)["sys-c1"].status == "not_expected"
    result = treatment_events.set_patient_status(
        session, NURSE, patient, "active", reason="entered for the wrong patient", now=now + 20 * D
    )
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.status, c1.not_expected_reason, c1.missed_reason) == ("missed", None, "not_offered")
    assert result.reactivated >= 1


def test_a_cycle_recorded_after_the_death_creates_its_forms_not_expected_never_missed(session, factory, now):
    """Died on 5 March, and only then the cycle of 10 February is entered: its post-cycle form
    (open 27 February - 8 March, grace included, so still open on the day of death) and its
    later diary days are created not expected with the death as reason, with no missed reason;
    the diary days before the death are past and were never offered."""
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 1, 5)).patient
    treatment_events.set_patient_status(
        session, NURSE, patient, "died", status_date=dt.date(2026, 3, 5), reason="reported by family", now=now
    )
    treatment_events.record_event(
        session, NURSE, patient, kind="systemic_cycle", date=dt.date(2026, 2, 10), now=now + dt.timedelta(hours=1)
    )
    tps = timepoints_of(session, patient)
    c1 = tps["sys-c1"]
    assert (c1.status, c1.not_expected_reason, c1.missed_reason) == ("not_expected", "died", None)
    assert (tps["diary-2026-02-17"].status, tps["diary-2026-02-17"].missed_reason) == ("missed", "not_offered")
    created = {a.new["key"]: a.new for a in _audits(session, "create")}
    assert created["sys-c1"]["status"] == "not_expected" and created["sys-c1"]["not_expected_reason"] == "died"


def test_diary_days_a_correction_adds_after_they_closed_are_not_offered_from_the_instant_they_close(
    session, factory, now
):
    """Cycle 1 corrected from 3 to 1 March at midnight of 11 March (Shanghai): nadir-diary days 8
    and 9 March are new, both closed (the 9th's grace period ends at this very instant), and were
    never open to the patient while they existed: missed ``not_offered``."""
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 1, 5)).patient
    cycle, _ = treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=C1, now=now)
    at = dt.datetime(2026, 3, 10, 16, tzinfo=dt.UTC)
    result = treatment_events.move_event(session, NURSE, cycle, date=dt.date(2026, 3, 1), reason="date typo", now=at)
    tps = timepoints_of(session, patient)
    assert tps["diary-2026-03-09"].grace_closes_at == at
    for day in ("diary-2026-03-08", "diary-2026-03-09"):
        assert (tps[day].status, tps[day].missed_reason, tps[day].created_at) == ("missed", "not_offered", at)
    assert result.created == 2


def test_forms_begun_but_not_sent_follow_a_death_and_its_correction(session, factory, now):
    """A 14-day cycle of 25 February: its post-cycle form (7-13 March) and the diary of 10 March
    are open and begun (one with answers saved, one opened on paper) when the patient dies on
    10 March: both become not expected with the death as reason. The death, corrected ten days
    later as entered in error, gives them back as partial forms (begun, windows closed)."""
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 1, 5)).patient
    # First entered as 24 February on 3 March, the day's diary begun then; corrected today, so
    # that begun diary day is no longer planned (it stays as it is, and is passed over below).
    cycle, _ = treatment_events.record_event(
        session,
        NURSE,
        patient,
        kind="systemic_cycle",
        date=dt.date(2026, 2, 24),
        cycle_length_days=14,
        now=now - 7 * D,
    )
    timepoints_of(session, patient)["diary-2026-03-03"].started_at = now - 7 * D
    session.flush()
    treatment_events.move_event(session, NURSE, cycle, date=dt.date(2026, 2, 25), reason="date typo", now=now)
    tps = timepoints_of(session, patient)
    assert tps["diary-2026-03-03"].id < min(tps["diary-2026-03-10"].id, tps["sys-c1"].id)  # visited first
    c1, diary = tps["sys-c1"], tps["diary-2026-03-10"]
    assert (c1.window_start, c1.window_end, c1.status, diary.status) == (
        dt.date(2026, 3, 7),
        dt.date(2026, 3, 13),
        "open",
        "open",
    )
    c1.started_at = now
    _begin_diary(session, diary, now)
    session.flush()
    assert timepoints.reconcile_patient(session, NURSE, patient, now).changed == 0  # alive: begun forms stay open
    assert {timepoints_of(session, patient)[key].status for key in ("sys-c1", "diary-2026-03-10")} == {"open"}
    died = treatment_events.set_patient_status(
        session, NURSE, patient, "died", status_date=dt.date(2026, 3, 10), reason="reported by family", now=now
    )
    tps = timepoints_of(session, patient)
    for key in ("sys-c1", "diary-2026-03-10"):
        assert (tps[key].status, tps[key].not_expected_reason) == ("not_expected", "died")
    marks = [a for a in _audits(session, "not_expected")]
    assert {"sys-c1", "diary-2026-03-10"} <= {a.new["key"] for a in marks}
    assert died.not_expected == len(marks)

    corrected = treatment_events.correct_death(
        session, NURSE, patient, reason="entered for the wrong patient", now=now + 10 * D
    )
    tps = timepoints_of(session, patient)
    for key in ("sys-c1", "diary-2026-03-10"):
        assert (tps[key].status, tps[key].not_expected_reason) == ("partial", None)
    back = {a.new["key"]: a for a in _audits(session, "reactivate")}
    assert back["sys-c1"].new == {"key": "sys-c1", "status": "partial", "not_expected_reason": None}
    assert back["diary-2026-03-10"].old == {"status": "not_expected", "not_expected_reason": "died"}
    assert corrected.reactivated == len(back)


def test_a_begun_diary_day_keeps_its_anchor_when_the_cycle_moves_and_the_days_after_it_follow(
    session, patient, cycle, now
):
    """Cycle 1 moved two days on: the diary day of 12 March, begun, is planned again under the new
    date but keeps the anchor it was begun under (its study day); the shared days after it take
    the new anchor."""
    tps = timepoints_of(session, patient)
    tps["diary-2026-03-12"].started_at = now
    session.flush()
    treatment_events.move_event(session, NURSE, cycle, date=C1 + 2 * D, reason="date typo", now=now)
    tps = timepoints_of(session, patient)
    assert tps["diary-2026-03-12"].anchor_date == C1
    assert {tps[f"diary-2026-03-{d}"].anchor_date for d in range(13, 18)} == {C1 + 2 * D}


def test_moving_the_end_of_treatment_moves_its_form_and_the_follow_up_two_moves(session, patient, cycle, now):
    treatment_events.record_event(session, NURSE, patient, kind="end_of_treatment", date=dt.date(2026, 3, 9), now=now)
    timepoints.reconcile_all(session, now + 20 * D)
    before = {k: tp.target_date for k, tp in timepoints_of(session, patient).items() if k in ("eot", "fu-1")}
    first_move = len(_audits(session, "move"))
    result = treatment_events.move_event(
        session, NURSE, patient.events[-1], date=dt.date(2026, 3, 10), reason="date typo", now=now + 20 * D
    )
    tps = timepoints_of(session, patient)
    assert {k: tps[k].target_date for k in before} == {k: day + D for k, day in before.items()}
    moves = [a.new["key"] for a in _audits(session, "move")][first_move:]
    assert sorted(moves) == ["eot", "fu-1"] and result.moved == 2


def test_a_form_whose_corrected_window_closed_before_it_was_planned_was_not_offered(session, factory, now):
    """Entered on 4 March (window 4-10 March, open), then the cycle date corrected from 15 to 5
    February: the corrected window (22-28 February, grace until 3 March) had closed before the
    form existed, so the patient never had it on one of its days."""
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 1, 5)).patient
    cycle, _ = treatment_events.record_event(
        session, NURSE, patient, kind="systemic_cycle", date=dt.date(2026, 2, 15), now=now - 6 * D
    )
    assert timepoints_of(session, patient)["sys-c1"].status == "open"
    treatment_events.move_event(session, NURSE, cycle, date=dt.date(2026, 2, 5), reason="date typo", now=now)
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.window_start, c1.grace_end) == (dt.date(2026, 2, 22), dt.date(2026, 3, 3))
    assert (c1.status, c1.missed_reason) == ("missed", "not_offered")


def test_the_scheduler_sweep_reports_a_patients_planning_error_skips_locked_ones_and_goes_on(
    session, factory, now, caplog
):
    """Four patients never planned: one with two end-of-treatment events (inconsistent data),
    one under a data lock, two fine. The sweep plans the last two (audited as the scheduler,
    reason "scheduler sweep"; the counts add up), reports the first by study id with the
    planner's message and leaves it unplanned (and logs it), leaves the locked one alone, and
    checkpoints after each patient it tried."""
    site = factory.site(code="RA1")
    broken, locked, fine, also_fine = (
        factory.patient(site, arm="B", randomization_date=RAND).patient for _ in range(4)
    )
    for day in (C1, C1 + D):
        session.add(TreatmentEvent(patient_id=broken.id, kind="end_of_treatment", date=day, created_at=now))
    locks.lock(session, NURSE, "patient", patient=locked, reason="query on the CRF", now=now)
    session.flush()
    with pytest.raises(ValueError) as planning:
        timepoints.preview_patient(session, broken, now, timepoints.configured_schedule(), None)
    checkpoints = []
    with caplog.at_level(logging.ERROR, logger="qol_app.services.timepoints"):
        result = timepoints.reconcile_all(session, now, checkpoint=lambda: checkpoints.append(1))
    assert result.errors == [f"{broken.study_id}: {planning.value}"]
    assert caplog.messages == [f"reconcile of patient {broken.study_id} failed: {planning.value}"]
    assert (result.patients, len(checkpoints), result.changes.created) == (3, 3, 2)
    assert set(timepoints_of(session, fine)) == set(timepoints_of(session, also_fine)) == {"baseline"}
    assert timepoints_of(session, broken) == {} and timepoints_of(session, locked) == {}
    created = _audits(session, "create")
    assert {(a.actor_type, a.actor_id, a.reason) for a in created} == {("system", "scheduler", "scheduler sweep")}
    assert sorted(a.patient_id for a in created) == [fine.id, also_fine.id]
    assert timepoints.patients_due_for_reconcile(session, now) == sorted([broken.id, locked.id])  # tried again


def test_a_full_reconcile_reports_planning_errors_in_enrolment_order(session, factory, now):
    """``qol scheduler reconcile`` (and the scheduler's sweep) report one line per patient they
    could not plan, in the order the patients were enrolled, the same on every run and database,
    whatever their next replanning times (the first patient's is the later one, then the
    earlier)."""
    site = factory.site(code="RA2")
    first, second = (factory.patient(site, arm="B", randomization_date=RAND).patient for _ in range(2))
    for broken in (first, second):
        for day in (C1, C1 + D):
            session.add(TreatmentEvent(patient_id=broken.id, kind="end_of_treatment", date=day, created_at=now))
    first.replan_at, second.replan_at = now + 5 * D, now + D
    session.flush()
    result = timepoints.reconcile_all(session, now, full=True)
    assert [error.split(":")[0] for error in result.errors] == [first.study_id, second.study_id]
    # the scheduler's sweep, of the patients due, lists them the same way
    first.replan_at, second.replan_at = now - D, now - 5 * D
    session.flush()
    assert timepoints.patients_due_for_reconcile(session, now) == [first.id, second.id]
    result = timepoints.reconcile_all(session, now)
    assert [error.split(":")[0] for error in result.errors] == [first.study_id, second.study_id]


def test_a_full_reconcile_replans_every_patient_due_or_not(session, patient, cycle, now):
    """After a schedule file edit (here, a window widened by hand) no patient is due, yet
    ``reconcile_all(full=True)`` (``qol scheduler reconcile``) puts the planned window back,
    audited with the reason "full reconcile"; the due-only sweep did not."""
    c1 = timepoints_of(session, patient)["sys-c1"]
    planned_end = c1.window_end
    c1.window_end = planned_end + 2 * D
    session.flush()
    assert timepoints.reconcile_all(session, now).patients == 0
    assert timepoints_of(session, patient)["sys-c1"].window_end == planned_end + 2 * D
    result = timepoints.reconcile_all(session, now, full=True)
    assert (result.patients, result.errors, result.changes.moved) == (1, [], 1)
    assert timepoints_of(session, patient)["sys-c1"].window_end == planned_end
    (move,) = _audits(session, "move")
    assert (move.new["key"], move.reason, move.actor_id) == ("sys-c1", "full reconcile", "scheduler")


def test_an_end_status_stored_without_a_date_counts_from_today_and_is_logged(session, factory, now, caplog):
    """Two patients with the same cycle, both withdrawn: one dated today, one (older data) with no
    date. The undated one is planned as if withdrawn today (the same forms not expected, for the
    same reason), today in the patient's zone (01:00 on 11 March in Shanghai, still 10 March in
    UTC), and the log names the patient, the status and the day assumed."""
    at = dt.datetime(2026, 3, 10, 17, tzinfo=dt.UTC)
    rows = {}
    for dated in (True, False):
        patient = factory.patient(arm="B", randomization_date=RAND).patient
        treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=C1, now=now)
        patient.status, patient.status_date = "withdrawn", dt.date(2026, 3, 11) if dated else None
        session.flush()
        with caplog.at_level(logging.WARNING, logger="qol_app.services.timepoints"):
            caplog.clear()
            timepoints.reconcile_patient(session, NURSE, patient, at)
        warned = list(caplog.messages)
        rows[dated] = {k: (tp.status, tp.not_expected_reason) for k, tp in timepoints_of(session, patient).items()}
    assert warned == [f"patient {patient.id} is withdrawn without a date; treating the end as 2026-03-11"]
    assert rows[False] == rows[True]
    assert rows[False]["sys-c1"] == ("not_expected", "withdrawn")
    assert rows[False]["diary-2026-03-12"] == ("not_expected", "withdrawn")


def test_a_reconcile_of_a_patient_waits_while_another_one_is_under_way(committing_app):
    """PostgreSQL: two reconciles of one patient (a nurse recording a cycle and the scheduler,
    say) are serialised by a row lock on the patient taken before anything is read. While the
    nurse's transaction is open the scheduler's reconcile waits (here it gives up after 200 ms)
    instead of planning from rows about to change; once the nurse's commits, it finds the cycle's
    forms already there and changes nothing."""
    engine = committing_app.extensions["qol_db"]["engine"]
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: there is no row lock to take")
    patient = Factory(db.session, FIXED_NOW).patient(arm="B", randomization_date=RAND).patient
    timepoints.reconcile_patient(db.session, NURSE, patient, FIXED_NOW)
    db.session.commit()
    with (
        Session(engine, info=audit.session_info(AUDIT_KEY)) as nurse,
        Session(engine, info=audit.session_info(AUDIT_KEY)) as scheduler,
    ):
        treatment_events.record_event(
            nurse, NURSE, nurse.get(Patient, patient.id), kind="systemic_cycle", date=C1, now=FIXED_NOW
        )
        scheduler.execute(text("SET lock_timeout = '200ms'"))
        with pytest.raises(OperationalError) as waited:
            timepoints.reconcile_patient(scheduler, SCHEDULER, scheduler.get(Patient, patient.id), FIXED_NOW)
        assert waited.value.orig.sqlstate == "55P03"  # lock_not_available: it waited for the nurse's
        scheduler.rollback()
        nurse.commit()
        again = timepoints.reconcile_patient(scheduler, SCHEDULER, scheduler.get(Patient, patient.id), FIXED_NOW)
        assert again.changed == 0 and "sys-c1" in timepoints_of(scheduler, patient)
        scheduler.commit()


def test_a_patient_is_due_for_replanning_from_midnight_at_the_site_on_the_day_the_plan_changes(
    session, patient, cycle, now
):
    """The end of treatment puts fu-1 weeks ahead: the patient is due again from midnight in
    Shanghai (the patient's zone) on the day its window comes within the horizon, not a moment
    before."""
    treatment_events.record_event(session, NURSE, patient, kind="end_of_treatment", date=dt.date(2026, 3, 9), now=now)
    session.expire_all()
    due = patient.replan_at
    local = due.astimezone(ZoneInfo("Asia/Shanghai"))
    assert local.time() == dt.time(0) and local.date() > now.date()
    assert patient.id not in timepoints.patients_due_for_reconcile(session, due - dt.timedelta(microseconds=1))
    assert patient.id in timepoints.patients_due_for_reconcile(session, due)
