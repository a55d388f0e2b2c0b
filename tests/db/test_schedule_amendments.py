"""Versioned schedules: an amendment from an effective date never rewrites the past (CLINICAL.md §2)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from qol_app.models import AuditEvent, Patient, ScheduleAmendment, Timepoint
from qol_app.scheduling import SCHEDULES_DIR, load_schedule
from qol_app.services import compliance, schedules, sites, timepoints, treatment_events
from qol_app.services.audit import Actor, verify
from tests.db.conftest import timepoints_of

D = dt.timedelta(days=1)
NURSE = Actor("staff", None)
CLI = Actor.system("cli")
EFFECTIVE = dt.date(2026, 3, 5)


@pytest.fixture
def calendar(tmp_path) -> tuple[Path, object]:
    text = (SCHEDULES_DIR / "fixed_calendar.example.yaml").read_text(encoding="utf-8")
    path = tmp_path / "calendar-v2.yaml"
    path.write_text(text.replace('version: "1"', 'version: "2"'), encoding="utf-8")
    return path, load_schedule(path)


@pytest.fixture
def conquer_v3(tmp_path) -> tuple[Path, object]:
    """The shipped treatment-anchored schedule as a new version, conquer_default@3."""
    text = (SCHEDULES_DIR / "conquer.yaml").read_text(encoding="utf-8")
    path = tmp_path / "conquer-v3.yaml"
    path.write_text(text.replace('version: "2"', 'version: "3"'), encoding="utf-8")
    return path, load_schedule(path)


@pytest.fixture
def trial(session, factory, now):
    """Four patients on the treatment-anchored schedule since January, with missed forms and reasons."""
    site = factory.site(code="AM1")
    nurse = factory.staff("nurse", sites=[site])
    start = now - 64 * D  # enrolled on the randomization day, so nothing is "not offered"
    patients = []
    for i, arm in enumerate("ABAB"):
        enrolled = factory.patient(site, arm=arm, randomization_date=(start + i * D).date())
        patient = enrolled.patient
        patient.created_at = start + i * D
        timepoints.reconcile_patient(session, NURSE, patient, start + i * D)
        for n in range(3):
            day = (start + (i + 1 + 21 * n) * D).date()
            recorded = dt.datetime.combine(day, dt.time(4), tzinfo=dt.UTC)
            treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=day, now=recorded)
            if arm == "A":
                treatment_events.record_event(
                    session, NURSE, patient, kind="intrathecal_dose", date=day + D, now=recorded + D
                )
        patients.append(patient)
    timepoints.sweep_statuses(session, now)
    missed = session.scalars(select(Timepoint).where(Timepoint.status == "missed").order_by(Timepoint.id)).all()
    assert len(missed) > 20
    for tp in missed[::2]:
        compliance.set_missed_reason(session, NURSE, nurse, tp, "too_ill", None, change_reason=None, now=now)
    session.flush()
    return patients


def _past(session) -> dict[int, tuple]:
    return {
        tp.id: (
            tp.key,
            tp.status,
            tp.missed_reason,
            tp.window_start,
            tp.window_end,
            tp.grace_end,
            tp.cancel_reason,
            tp.not_expected_reason,
            tp.schedule_version,
        )
        for tp in session.scalars(select(Timepoint).where(Timepoint.window_start < EFFECTIVE))
    }


def test_every_timepoint_stores_the_version_that_created_it(session, trial):
    versions = set(session.scalars(select(Timepoint.schedule_version)))
    assert versions == {"conquer_default@2"}


def test_switch_to_a_calendar_schedule_touches_no_past_form(session, trial, calendar, now):
    path, schedule = calendar
    before = _past(session)
    reasons = sum(1 for v in before.values() if v[2] == "too_ill")
    assert reasons > 10 and any(v[1] == "missed" for v in before.values())

    preview = schedules.preview(session, schedule, EFFECTIVE, now)
    assert _past(session) == before  # a preview writes nothing
    assert {p.study_id for p in preview} == {p.study_id for p in trial}
    by_key = {(tp.patient.study_id, tp.key): tp for tp in session.scalars(select(Timepoint))}
    for change in preview:
        for key in (*change.move, *change.cancel, *change.reactivate):
            assert by_key[(change.study_id, key)].window_start >= EFFECTIVE
        assert change.kept_past == sum(
            1 for (sid, _k), tp in by_key.items() if sid == change.study_id and tp.window_start < EFFECTIVE
        )
    assert sum(len(p.create) for p in preview) > 0 and sum(len(p.cancel) for p in preview) > 0

    audits_before = session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    result = schedules.apply(session, CLI, schedule, EFFECTIVE, now, source=path)
    assert result.errors == [] and result.patients == 4
    assert result.changes.created == sum(len(p.create) for p in preview)
    assert result.changes.cancelled == sum(len(p.cancel) for p in preview)

    assert _past(session) == before  # 0 past forms touched: statuses, reasons, windows, version
    changed = session.scalars(
        select(AuditEvent).where(AuditEvent.id > audits_before, AuditEvent.entity_type == "timepoint")
    ).all()
    assert changed and not {a.entity_id for a in changed} & set(before)
    assert all(a.reason == "schedule amendment fixed_calendar_example@2 from 2026-03-05" for a in changed)
    new = session.scalars(select(Timepoint).where(Timepoint.id.not_in(before))).all()
    created = [tp for tp in new if tp.schedule_version == "fixed_calendar_example@2"]
    assert created and all(tp.window_start >= EFFECTIVE and tp.key.startswith("cal-") for tp in created)
    cancelled = [tp for tp in new if tp.status == "cancelled"]
    assert cancelled and {tp.cancel_reason for tp in cancelled} == {"schedule_amended"}
    applied = session.scalars(select(ScheduleAmendment)).one()
    assert (applied.version_label, applied.effective_date, applied.applied_by) == (
        "fixed_calendar_example@2",
        EFFECTIVE,
        "system:cli",
    )
    apply_audit = session.scalars(select(AuditEvent).where(AuditEvent.entity_type == "schedule_amendment")).one()
    assert apply_audit.new["effective_date"] == "2026-03-05" and len(apply_audit.new["sha256"]) == 64
    assert verify(session) == []

    # Planning again under the amendment changes nothing; the old file is refused, not obeyed.
    for patient in trial:
        assert timepoints.reconcile_patient(session, NURSE, patient, now + D, schedule=schedule).changed == 0
    with pytest.raises(ValueError, match="schedule in force is fixed_calendar_example@2"):
        timepoints.reconcile_patient(session, NURSE, trial[0], now + D)
    with pytest.raises(ValueError, match="already in force"):
        schedules.apply(session, CLI, schedule, EFFECTIVE, now, source=path)


def test_the_sweep_misses_no_patient_whose_plan_changes_under_an_amendment(session, trial, calendar, now):
    path, schedule = calendar
    schedules.apply(session, CLI, schedule, EFFECTIVE, now, source=path)
    amendment = timepoints.amendment_in_force(session, schedule)
    seen_due = 0
    for days in (0, 7, 30, 61, 120):
        at = now + days * D
        due = set(timepoints.patients_due_for_reconcile(session, at))
        would_change = {
            p.id for p in trial if timepoints.preview_patient(session, p, at, schedule, amendment).changes.has_changes
        }
        assert would_change <= due, days
        seen_due += len(would_change)
        for pid in sorted(due):
            timepoints.reconcile_patient(session, NURSE, session.get(Patient, pid), at, schedule=schedule)
        assert timepoints.patients_due_for_reconcile(session, at) == []  # each reconcile moved replan_at on
    assert seen_due > 0  # the calendar's occurrences reached the horizon on the way


def test_schedule_cli_show_diff_apply(app, session, trial, calendar, now):
    path, _schedule = calendar
    app.config["FROZEN_NOW"] = now
    runner = app.test_cli_runner()
    shown = runner.invoke(args=["schedule", "show"])
    assert shown.exit_code == 0, shown.output
    assert "schedule conquer_default@2" in shown.output and "no amendment applied" in shown.output
    before = _past(session)
    diffed = runner.invoke(args=["schedule", "diff", str(path), "--effective", EFFECTIVE.isoformat()])
    assert diffed.exit_code == 0, diffed.output
    first = trial[0].study_id
    line = next(line for line in diffed.output.splitlines() if line.startswith(f"{first}:"))
    assert "create" in line and "cal-" in line and "cancel" in line and "sys-c3" in line
    assert "4 of 4 patients change" in diffed.output
    assert session.scalar(select(ScheduleAmendment.id)) is None and _past(session) == before
    applied = runner.invoke(args=["schedule", "apply", str(path), "--effective", EFFECTIVE.isoformat()])
    assert applied.exit_code == 0, applied.output
    assert "applied fixed_calendar_example@2 from 2026-03-05 to 4 patients" in applied.output
    assert "QOL_SCHEDULE_FILE=" in applied.output
    assert _past(session) == before
    again = runner.invoke(args=["schedule", "apply", str(path), "--effective", EFFECTIVE.isoformat()])
    assert again.exit_code != 0 and "already in force" in again.output
    app.config["SCHEDULE_FILE"] = str(path)
    shown = runner.invoke(args=["schedule", "show"])
    assert "amendment fixed_calendar_example@2 effective 2026-03-05" in shown.output
    bad = runner.invoke(args=["schedule", "diff", str(path), "--effective", "soon"])
    assert bad.exit_code != 0 and "not a date" in bad.output


def test_calendar_visits_an_amendment_drops_are_cancelled_as_amended(session, factory, now):
    """A patient planned on a fixed calendar (visits anchored on randomization, no event behind
    them), then the treatment-anchored schedule from EFFECTIVE: the future calendar visits are
    cancelled with the reason ``schedule_amended``, the past ones stay."""
    start = now - 64 * D
    patient = factory.patient(arm="A", randomization_date=start.date(), enrolled_at=start).patient
    calendar_v1 = load_schedule(SCHEDULES_DIR / "fixed_calendar.example.yaml")
    timepoints.reconcile_patient(session, NURSE, patient, start, schedule=calendar_v1)
    timepoints.reconcile_patient(session, NURSE, patient, now, schedule=calendar_v1)
    assert set(timepoints_of(session, patient)) == {"baseline", "cal-1", "cal-2", "cal-3", "cal-4"}

    conquer = timepoints.configured_schedule()
    result = schedules.apply(session, CLI, conquer, EFFECTIVE, now, source=SCHEDULES_DIR / "conquer.yaml")
    assert result.errors == [] and result.changes.cancelled == 2
    rows = timepoints_of(session, patient)
    assert {k: (rows[k].status, rows[k].cancel_reason) for k in ("cal-3", "cal-4")} == {
        "cal-3": ("cancelled", "schedule_amended"),
        "cal-4": ("cancelled", "schedule_amended"),
    }
    assert rows["cal-2"].status == "missed" and rows["cal-2"].cancel_reason is None


def test_the_version_in_force_decides_which_schedule_file_may_plan(session, trial, calendar, now, caplog):
    """Before any amendment the version that planned the stored rows is in force: planning with
    another file is refused naming both versions, and the scheduler's sweep plans nobody and says
    so once. After ``qol schedule apply`` the amendment is in force, from its effective date as
    applied, and the old file is the one refused."""
    path, schedule = calendar
    conquer = timepoints.configured_schedule()
    assert timepoints.amendment_in_force(session, conquer) is None
    assert timepoints.schedule_in_force(session) == "conquer_default@2"  # what /readyz and qol check report
    with pytest.raises(ValueError) as refused:
        timepoints.amendment_in_force(session, schedule)
    assert str(refused.value) == (
        "The schedule in force is conquer_default@2, but the configured schedule file is fixed_calendar_example@2."
    )
    with caplog.at_level(logging.ERROR, logger="qol_app.services.timepoints"):
        result = timepoints.reconcile_all(session, now + 30 * D, schedule=schedule, full=True)
    assert (result.patients, result.changes.changed, result.errors) == (0, 0, [str(refused.value)])
    assert caplog.messages == [f"reconcile refused: {refused.value}"]

    applied_at = now + D
    schedules.apply(session, CLI, schedule, EFFECTIVE, applied_at, source=path)
    amendment = timepoints.amendment_in_force(session, schedule)
    assert (amendment.version, amendment.effective, amendment.applied_at) == (
        "fixed_calendar_example@2",
        EFFECTIVE,
        applied_at,
    )
    assert timepoints.schedule_in_force(session) == "fixed_calendar_example@2"
    with pytest.raises(ValueError) as refused:
        timepoints.amendment_in_force(session, conquer)
    assert str(refused.value) == (
        "The schedule in force is fixed_calendar_example@2, but the configured schedule file is conquer_default@2."
    )


def test_on_an_empty_database_any_schedule_file_may_plan(session):
    assert timepoints.amendment_in_force(session, timepoints.configured_schedule()) is None
    assert timepoints.schedule_in_force(session) is None


def test_an_amendment_that_has_planned_nothing_yet_is_in_force_all_the_same(session, factory, now, conquer_v3):
    """``qol schedule apply`` of a new version effective months ahead creates no timepoint today,
    so the newest stored row is still the old version's: the amendment decides all the same. The
    new file plans (and changes nothing), the old one is refused."""
    start = now - 10 * D
    patient = factory.patient(arm="A", randomization_date=start.date(), enrolled_at=start).patient
    conquer = timepoints.configured_schedule()
    timepoints.reconcile_patient(session, NURSE, patient, now)
    path, v3 = conquer_v3
    later = now + 200 * D
    result = schedules.apply(session, CLI, v3, later.date(), now, source=path)
    assert result.errors == [] and result.changes.changed == 0
    newest = session.scalars(select(Timepoint.schedule_version).order_by(Timepoint.id.desc()).limit(1)).first()
    assert newest == "conquer_default@2"
    assert timepoints.amendment_in_force(session, v3).version == "conquer_default@3"
    assert timepoints.schedule_in_force(session) == "conquer_default@3"  # the amendment's, not the newest row's
    assert timepoints.reconcile_patient(session, NURSE, patient, now + D, schedule=v3).changed == 0
    swept = timepoints.reconcile_all(session, now + D, schedule=v3, full=True)  # the new file, not yet configured
    assert (swept.patients, swept.errors) == (1, [])
    with pytest.raises(ValueError, match="The schedule in force is conquer_default@3, but"):
        timepoints.reconcile_patient(session, NURSE, patient, now + D, schedule=conquer)


def test_a_dose_recorded_after_an_amendment_gets_its_diary_days_before_the_effective_date(
    session, factory, now, conquer_v3
):
    """Under an amendment from 5 March, a dose given on 1 March but recorded only after the
    amendment was applied gets all its diary days, those before the effective date too: none of
    them was planned under the old version, so they are not the past it keeps, and deleting the
    dose cancels them all."""
    start = now - 20 * D
    patient = factory.patient(arm="A", randomization_date=start.date(), enrolled_at=start).patient
    timepoints.reconcile_patient(session, NURSE, patient, start)
    path, v3 = conquer_v3
    schedules.apply(session, CLI, v3, EFFECTIVE, now, source=path)
    dose, _ = treatment_events.record_event(
        session, NURSE, patient, kind="intrathecal_dose", date=dt.date(2026, 3, 1), now=now + D, schedule=v3
    )
    rows = timepoints_of(session, patient)
    diaries = sorted(k for k in rows if k.startswith("diary-"))
    assert diaries == [f"diary-2026-03-0{d}" for d in range(2, 9)]
    assert {rows[k].schedule_version for k in diaries} == {"conquer_default@3"}
    assert {(rows[k].status, rows[k].missed_reason) for k in diaries} == {("missed", "not_offered")}
    # They are the amended version's own rows, not the past: deleting the dose cancels them all.
    treatment_events.delete_event(session, NURSE, dose, reason="wrong patient", now=now + 2 * D, schedule=v3)
    rows = timepoints_of(session, patient)
    assert {(rows[k].status, rows[k].cancel_reason) for k in diaries} == {("cancelled", "anchor_event_deleted")}


def test_a_patient_enrolled_after_an_amendment_gets_a_baseline_before_the_effective_date(
    session, factory, now, conquer_v3
):
    """A patient randomized on 1 March but enrolled in the app only after an amendment from 5
    March was applied: the baseline (window before the effective date) is still created under the
    amended version, never offered, as for a dose recorded late."""
    path, v3 = conquer_v3
    schedules.apply(session, CLI, v3, EFFECTIVE, now, source=path)
    patient = factory.patient(arm="A", randomization_date=dt.date(2026, 3, 1), enrolled_at=now + D).patient
    timepoints.reconcile_patient(session, NURSE, patient, now + D, schedule=v3)
    baseline = timepoints_of(session, patient)["baseline"]
    assert baseline.window_start < EFFECTIVE and baseline.schedule_version == "conquer_default@3"
    assert (baseline.status, baseline.missed_reason) == ("missed", "not_offered")


def test_a_past_form_open_on_the_day_a_patient_withdraws_follows_the_status_both_ways(
    session, factory, now, conquer_v3
):
    """Under an amendment from tomorrow, the old version's nadir diaries are the past. A patient
    who withdraws today cannot answer the diaries still open today (today's, and yesterday's in its
    grace day): they become not expected, as without the amendment, never missed later. Setting
    the patient back to active makes them expected again, with the old version's own dates."""
    start = now - 20 * D
    patient = factory.patient(arm="A", randomization_date=start.date(), enrolled_at=start).patient
    cycle_day = dt.date(2026, 3, 1)  # nadir diaries 8-15 March
    recorded = dt.datetime.combine(cycle_day, dt.time(4), tzinfo=dt.UTC)
    treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=cycle_day, now=recorded)
    path, v3 = conquer_v3
    schedules.apply(session, CLI, v3, now.date() + D, now, source=path)
    before = {
        k: (tp.schedule_version, tp.window_start, tp.grace_end) for k, tp in timepoints_of(session, patient).items()
    }
    assert before["diary-2026-03-10"][0] == "conquer_default@2"

    treatment_events.set_patient_status(
        session, NURSE, patient, "withdrawn", status_date=now.date(), reason="consent withdrawn", now=now, schedule=v3
    )
    rows = timepoints_of(session, patient)
    for key in ("diary-2026-03-09", "diary-2026-03-10", "diary-2026-03-11"):
        assert (rows[key].status, rows[key].not_expected_reason) == ("not_expected", "withdrawn"), key
    assert rows["diary-2026-03-08"].not_expected_reason is None  # closed before the 10th
    timepoints.sweep_statuses(session, now + 10 * D)
    assert timepoints_of(session, patient)["diary-2026-03-10"].status == "not_expected"  # never missed

    last_audit = session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    result = treatment_events.set_patient_status(
        session, NURSE, patient, "active", reason="entered in error", now=now + 10 * D, schedule=v3
    )
    reactivated = session.scalars(
        select(AuditEvent).where(AuditEvent.id > last_audit, AuditEvent.action == "reactivate").order_by(AuditEvent.id)
    ).all()
    assert result.reactivated == len(reactivated)
    restored = {a.entity_id for a in reactivated}
    rows = timepoints_of(session, patient)
    assert {str(rows[k].id) for k in ("diary-2026-03-09", "diary-2026-03-10", "diary-2026-03-11")} <= restored
    for key in ("diary-2026-03-09", "diary-2026-03-10", "diary-2026-03-11"):
        assert rows[key].not_expected_reason is None, key
        assert rows[key].status == "missed", key  # expected again; its window has closed by now
        assert (rows[key].schedule_version, rows[key].window_start, rows[key].grace_end) == before[key]
    assert verify(session) == []


def test_a_past_form_open_on_the_death_date_by_its_own_dates_stays_not_expected_under_a_shorter_grace(
    session, factory, now, tmp_path
):
    """An amendment that shortens the questionnaires' grace (3 days to 1) leaves the past with its
    own dates. A patient who died during the old grace of the first post-cycle form could not
    answer it: it is not expected, although under the new dates it would have closed before."""
    text = (SCHEDULES_DIR / "conquer.yaml").read_text(encoding="utf-8")
    path = tmp_path / "conquer-v3-short-grace.yaml"
    path.write_text(
        text.replace('version: "2"', 'version: "3"').replace(
            "{questionnaire: 3, diary: 1}", "{questionnaire: 1, diary: 1}"
        ),
        encoding="utf-8",
    )
    v3 = load_schedule(path)
    start = now - 60 * D
    patient = factory.patient(arm="B", randomization_date=start.date(), enrolled_at=start).patient
    cycle_day = (now - 50 * D).date()
    recorded = dt.datetime.combine(cycle_day, dt.time(4), tzinfo=dt.UTC)
    treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=cycle_day, now=recorded)
    schedules.apply(session, CLI, v3, now.date(), now, source=path)
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.schedule_version, c1.window_end, c1.grace_end) == (
        "conquer_default@2",
        cycle_day + 23 * D,
        cycle_day + 26 * D,
    )
    died_on = cycle_day + 25 * D  # in the old grace; after the new one (window end + 1 day)
    treatment_events.set_patient_status(
        session, NURSE, patient, "died", status_date=died_on, reason="reported by family", now=now, schedule=v3
    )
    c1 = timepoints_of(session, patient)["sys-c1"]
    assert (c1.status, c1.not_expected_reason, c1.grace_end) == ("not_expected", "died", cycle_day + 26 * D)


def test_a_past_form_open_on_the_day_a_patient_withdraws_stays_expected_when_the_schedule_says_staff_entry(
    session, factory, now, conquer_v3
):
    """The same withdrawal under an amendment whose file says ``open_forms_at_end: staff_entry``:
    the old version's diaries still open that day stay expected (only staff can complete them),
    and nothing of the past is marked."""
    start = now - 20 * D
    patient = factory.patient(arm="A", randomization_date=start.date(), enrolled_at=start).patient
    cycle_day = dt.date(2026, 3, 1)  # nadir diaries 8-15 March
    recorded = dt.datetime.combine(cycle_day, dt.time(4), tzinfo=dt.UTC)
    treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=cycle_day, now=recorded)
    path, v3 = conquer_v3
    staff_entry = dataclasses.replace(v3, open_forms_at_end="staff_entry")
    schedules.apply(session, CLI, staff_entry, now.date() + D, now, source=path)
    last_audit = session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))

    treatment_events.set_patient_status(
        session,
        NURSE,
        patient,
        "withdrawn",
        status_date=now.date(),
        reason="consent withdrawn",
        now=now,
        schedule=staff_entry,
    )
    rows = timepoints_of(session, patient)
    for key in ("diary-2026-03-09", "diary-2026-03-10"):  # in its grace day, and open, on the 10th
        assert rows[key].schedule_version == "conquer_default@2", key  # the past the amendment keeps
        assert rows[key].status != "not_expected" and rows[key].not_expected_reason is None, key
    # Opening after the day of withdrawal: not expected, whatever the file says.
    assert (rows["diary-2026-03-11"].status, rows["diary-2026-03-11"].not_expected_reason) == (
        "not_expected",
        "withdrawn",
    )
    marked = session.scalars(
        select(AuditEvent.entity_id).where(AuditEvent.id > last_audit, AuditEvent.action == "mark_not_expected")
    ).all()
    assert str(rows["diary-2026-03-10"].id) not in marked
    assert verify(session) == []


def test_a_site_time_zone_change_under_an_amendment_moves_the_future_forms_but_not_the_past(
    session, factory, now, conquer_v3
):
    """A site's time zone corrected while an amendment is in force: the forms that open after the
    effective date get their instants from the new zone, the past the amendment keeps (its
    version's rows, before the effective date) keeps its instants."""
    site = factory.site(code="TZ1", tz="Asia/Shanghai")
    start = now - 20 * D
    patient = factory.patient(site, arm="A", randomization_date=start.date(), enrolled_at=start).patient
    cycle_day = dt.date(2026, 3, 1)  # nadir diaries 8-15 March, the cycle-1 form from 21 March
    recorded = dt.datetime.combine(cycle_day, dt.time(4), tzinfo=dt.UTC)
    treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=cycle_day, now=recorded)
    path, v3 = conquer_v3
    effective = now.date() + D
    schedules.apply(session, CLI, v3, effective, now, source=path)
    before = {k: (tp.window_start, tp.opens_at, tp.closes_at) for k, tp in timepoints_of(session, patient).items()}
    past = {k for k, (start_day, _, _) in before.items() if start_day < effective}
    future = set(before) - past
    assert {"diary-2026-03-09", "diary-2026-03-10"} <= past and {"diary-2026-03-12", "sys-c1"} <= future

    sites.update_site(
        session,
        NURSE,
        site,
        {"timezone": "Europe/Paris"},
        reason="entered wrong",
        languages=["en", "zh_Hans"],
        now=now,
        schedule=v3,
    )
    after = {k: (tp.window_start, tp.opens_at, tp.closes_at) for k, tp in timepoints_of(session, patient).items()}
    assert {k: after[k] for k in past} == {k: before[k] for k in past}
    paris = ZoneInfo("Europe/Paris")
    for key in future:
        start_day = after[key][0]
        assert after[key][1] == dt.datetime.combine(start_day, dt.time(0), tzinfo=paris).astimezone(dt.UTC), key
        assert after[key][1] != before[key][1], key
    assert verify(session) == []


def test_the_schedule_named_by_a_configuration_is_the_one_loaded(tmp_path, conquer_v3):
    """``configured_schedule(config)`` reads that configuration's ``SCHEDULE_FILE``, not the
    running app's: ``qol check`` uses it to check another configuration."""
    path, _ = conquer_v3
    assert timepoints.configured_schedule().version_label == "conquer_default@2"
    other = timepoints.configured_schedule({"SCHEDULE_FILE": str(path)})
    assert other.version_label == "conquer_default@3"
