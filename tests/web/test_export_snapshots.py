"""Frozen snapshots: an export as of T shows only what had been recorded by T (patient statuses,
missed reasons, reactivations), and two exports with the same as-of are byte-identical before
and after later edits. A recorded death stays recorded; correcting it is its own audited act."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pandas as pd
import pytest
from sqlalchemy import select

from qol_app.errors import ServiceError
from qol_app.export.run import ExportRequest, ExportSettings
from qol_app.export.source import ExportFilters
from qol_app.models import AuditEvent, PatientStatusChange, Timepoint, TreatmentEvent
from qol_app.scheduling import SCHEDULES_DIR, load_schedule
from qol_app.services import audit, compliance, patient_records, schedules, treatment_events
from qol_app.services.audit import Actor
from qol_app.services.exports import run_export
from tests.factories import Factory

UTC = dt.UTC
DAY = dt.timedelta(days=1)
ENROLLED = dt.datetime(2026, 1, 5, 2, tzinfo=UTC)  # 10:00 in Shanghai
AS_OF = ENROLLED + 30 * DAY
LATER = ENROLLED + 36 * DAY
NURSE = Actor.system("tests")


def _export(session, tmp_path, name, *, as_of=AS_OF, now=LATER):
    request = ExportRequest(formats=("csv",), filters=ExportFilters(), as_of=as_of)
    return run_export(session, request, tmp_path / name, actor=NURSE, now=now, settings=ExportSettings())


def _csv(result, name):
    archive = zipfile.ZipFile(result.zip_path)
    return pd.read_csv(io.BytesIO(archive.read(name)), dtype=str, keep_default_na=False)


@pytest.fixture
def story(session):
    """A patient enrolled on 5 January, cycle 1 given the next day; nothing answered."""
    factory = Factory(session, ENROLLED)
    site = factory.site("S9")
    nurse = factory.staff("nurse", [site])
    patient = factory.patient(site, arm="A", study_id="S9-001", randomization_date=ENROLLED.date(), pin=None)
    patient = patient.patient
    treatment_events.record_event(
        session, NURSE, patient, kind="systemic_cycle", date=ENROLLED.date() + DAY, number=1, now=ENROLLED + DAY
    )
    session.flush()
    return patient, nurse


def test_as_of_export_is_frozen_before_a_later_death_and_a_later_reason(session, story, tmp_path):
    patient, nurse = story
    first = _export(session, tmp_path, "a", now=AS_OF + dt.timedelta(hours=1))
    forms = _csv(first, "forms.csv")
    missed = forms[forms["status"] == "missed"]
    assert len(missed) and set(missed["missing_reason"]) == {"not_recorded"}
    assert _csv(first, "patients.csv").iloc[0]["pt_status"] == "active"

    # After the as-of time: a nurse gives a reason, and a death (dated before T) is recorded.
    baseline = session.scalars(
        select(Timepoint).where(Timepoint.patient_id == patient.id, Timepoint.key == "baseline")
    ).one()
    compliance.set_missed_reason(
        session, NURSE, nurse, baseline, "too_ill", None, change_reason=None, now=LATER - 2 * DAY
    )
    treatment_events.set_patient_status(
        session, NURSE, patient, "died", status_date=(AS_OF - 5 * DAY).date(), reason="hospital record", now=LATER - DAY
    )
    session.flush()

    second = _export(session, tmp_path, "b")
    assert second.zip_path.read_bytes() == first.zip_path.read_bytes()
    manifest = json.loads(zipfile.ZipFile(second.zip_path).read("manifest.json"))
    head = manifest["audit_head"]
    event = session.get(AuditEvent, head["position"])
    assert event.hash == head["hash"] and event.occurred_at <= AS_OF
    assert session.scalar(select(AuditEvent.id).where(AuditEvent.occurred_at > AS_OF, AuditEvent.action != "export"))

    # As of now, both are known: the reason, the death, and later forms are not expected.
    now_export = _export(session, tmp_path, "c", as_of=LATER)
    forms = _csv(now_export, "forms.csv")
    base = forms[forms["timepoint"] == "baseline"]
    assert set(base["missing_reason"]) == {"too_ill"}
    assert _csv(now_export, "patients.csv").iloc[0]["pt_status"] == "died"
    assert "died" in set(forms["missing_reason"])
    assert audit.head_at(session, LATER)["position"] > head["position"]


def test_a_death_stays_recorded_and_is_corrected_as_its_own_act(session, story, tmp_path):
    patient, _nurse = story
    died_at = AS_OF - 4 * DAY
    treatment_events.set_patient_status(
        session, NURSE, patient, "died", status_date=(died_at - DAY).date(), reason="hospital record", now=died_at
    )
    not_expected = set(
        session.scalars(
            select(Timepoint.key).where(Timepoint.patient_id == patient.id, Timepoint.status == "not_expected")
        )
    )
    assert not_expected
    with pytest.raises(ServiceError, match="death stays recorded"):
        treatment_events.set_patient_status(
            session, NURSE, patient, "withdrawn", status_date=died_at.date(), reason="family", now=died_at + DAY
        )
    assert (patient.status, patient.status_date) == ("died", (died_at - DAY).date())

    corrected_at = LATER
    treatment_events.correct_death(
        session, NURSE, patient, status="active", reason="wrong patient: the death was of S9-002", now=corrected_at
    )
    session.flush()
    assert patient.status == "active"
    history = session.execute(
        select(PatientStatusChange.status, PatientStatusChange.kind, PatientStatusChange.recorded_at)
        .where(PatientStatusChange.patient_id == patient.id)
        .order_by(PatientStatusChange.id)
    ).all()
    assert [(s, k) for s, k, _at in history] == [("died", "set"), ("active", "correction")]
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.patient_id == patient.id, AuditEvent.entity_type == "patients")
    ).all()
    assert "correct_death" in actions
    reactivated = session.scalars(
        select(Timepoint.key).where(Timepoint.patient_id == patient.id, Timepoint.status == "not_expected")
    ).all()
    assert not reactivated

    # As of a time between the death record and its correction, the death and its not-expected
    # forms are still there; the reactivation recorded later is not known yet.
    between = _export(session, tmp_path, "d", as_of=AS_OF, now=corrected_at + DAY)
    assert _csv(between, "patients.csv").iloc[0]["pt_status"] == "died"
    forms = _csv(between, "forms.csv")
    assert set(forms[forms["status"] == "not_expected"]["missing_reason"]) == {"died"}
    after = _export(session, tmp_path, "e", as_of=corrected_at, now=corrected_at + DAY)
    assert _csv(after, "patients.csv").iloc[0]["pt_status"] == "active"
    assert "not_expected" not in set(_csv(after, "forms.csv")["status"])

    with pytest.raises(ServiceError, match="Only a recorded death"):
        treatment_events.correct_death(session, NURSE, patient, reason="again", now=corrected_at + DAY)


def _forms_of(result, key):
    forms = _csv(result, "forms.csv")
    return forms[forms["timepoint"] == key]


def _cycle(session, patient):
    return session.scalars(
        select(TreatmentEvent).where(TreatmentEvent.patient_id == patient.id, TreatmentEvent.kind == "systemic_cycle")
    ).one()


def test_as_of_export_keeps_the_dates_of_its_time_after_an_event_date_is_corrected(session, story, tmp_path):
    patient, _nurse = story
    first = _export(session, tmp_path, "a", now=AS_OF + dt.timedelta(hours=1))
    before = _forms_of(first, "sys-c1")
    assert set(before["target_day"]) == {"22"}  # cycle day 21 of a cycle given on 6 January
    assert len(_forms_of(first, "diary-d16")) and not len(_forms_of(first, "diary-d8"))  # 20, 12 January

    # After the as-of time the nurse corrects cycle 1 to 5 January: its forms move a day earlier,
    # one nadir diary day is added (12 January) and one cancelled (20 January).
    treatment_events.move_event(
        session, NURSE, _cycle(session, patient), date=ENROLLED.date(), reason="wrong day", now=LATER - DAY
    )
    session.flush()
    moved = {tp.key: tp for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id))}
    assert moved["sys-c1"].target_date == dt.date(2026, 1, 25)
    assert moved["diary-2026-01-20"].status == "cancelled" and "diary-2026-01-12" in moved

    second = _export(session, tmp_path, "b")
    assert second.zip_path.read_bytes() == first.zip_path.read_bytes()

    # Without an as-of (now), the export shows the new dates.
    current = _export(session, tmp_path, "c", as_of=LATER)
    assert set(_forms_of(current, "sys-c1")["target_day"]) == {"21"}
    assert len(_forms_of(current, "diary-d8")) and not len(_forms_of(current, "diary-d16"))


def test_as_of_export_keeps_the_dates_of_its_time_after_an_amendment(session, story, tmp_path, app):
    patient, _nurse = story
    first = _export(session, tmp_path, "a", now=AS_OF + dt.timedelta(hours=1))
    assert set(_forms_of(first, "sys-c1")["window_start_day"]) == {"19"}  # 23 January (study day 1 = 5 January)

    # Applied after the as-of time, effective from before it: the post-cycle window opens 5 days
    # before its target instead of 3.
    text = (SCHEDULES_DIR / "conquer.yaml").read_text(encoding="utf-8")
    path = tmp_path / "conquer-v3.yaml"
    path.write_text(
        text.replace('version: "2"', 'version: "3"').replace(
            "window: {before: 3, after: 3", "window: {before: 5, after: 3"
        ),
        encoding="utf-8",
    )
    result = schedules.apply(session, NURSE, load_schedule(path), dt.date(2026, 1, 20), LATER - DAY, source=path)
    session.flush()
    assert result.changes.moved == 1
    tp = session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id, Timepoint.key == "sys-c1")).one()
    assert tp.window_start == dt.date(2026, 1, 21) and tp.schedule_version == "conquer_default@2"

    second = _export(session, tmp_path, "b")
    assert second.zip_path.read_bytes() == first.zip_path.read_bytes()
    current = _export(session, tmp_path, "c", as_of=LATER)
    assert set(_forms_of(current, "sys-c1")["window_start_day"]) == {"17"}


def test_as_of_export_leaves_out_a_timepoint_cancelled_then_and_reactivated_later(session, story, tmp_path):
    """A status changed after the as-of time is rewound too: cancelled then is cancelled in the export."""
    patient, _nurse = story
    cycle = _cycle(session, patient)
    treatment_events.delete_event(session, NURSE, cycle, reason="entered in error", now=AS_OF - 2 * DAY)
    session.flush()
    first = _export(session, tmp_path, "a", now=AS_OF + dt.timedelta(hours=1))
    assert not len(_forms_of(first, "sys-c1"))

    treatment_events.record_event(
        session, NURSE, patient, kind="systemic_cycle", date=ENROLLED.date() + DAY, number=1, now=LATER - DAY
    )
    session.flush()
    tp = session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id, Timepoint.key == "sys-c1")).one()
    assert tp.status != "cancelled"
    second = _export(session, tmp_path, "b")
    assert second.zip_path.read_bytes() == first.zip_path.read_bytes()
    assert len(_forms_of(_export(session, tmp_path, "c", as_of=LATER), "sys-c1"))


def test_as_of_export_keeps_the_randomization_of_its_time_after_a_correction(session, story, tmp_path):
    """Re-anchoring (a corrected randomization date and arm) moves the calendar timepoints and every
    study day; a past snapshot keeps the ones of its time."""
    patient, _nurse = story
    first = _export(session, tmp_path, "a", now=AS_OF + dt.timedelta(hours=1))
    assert set(_forms_of(first, "sys-c1")["target_day"]) == {"22"}
    patient_records.correct_randomization(
        session,
        NURSE,
        patient,
        reason="randomized the day before",
        randomization_date=ENROLLED.date() - DAY,
        arm="B",
        now=LATER - DAY,
    )
    session.flush()
    second = _export(session, tmp_path, "b")
    assert second.zip_path.read_bytes() == first.zip_path.read_bytes()
    current = _export(session, tmp_path, "c", as_of=LATER)
    assert set(_forms_of(current, "sys-c1")["target_day"]) == {"23"}
    assert set(_csv(current, "patients.csv")["arm"]) == {"B"}


def test_an_arm_filtered_snapshot_keeps_the_patients_of_its_time_after_an_arm_correction(session, story, tmp_path):
    """``--arm A`` as of T selects the patients in arm A at T: a later correction to B neither
    drops the patient from that snapshot nor lets it into an arm-B snapshot of T."""
    patient, _nurse = story

    def by_arm(name, arm, *, as_of=AS_OF, now=LATER):
        request = ExportRequest(formats=("csv",), filters=ExportFilters(arms=(arm,)), as_of=as_of)
        return run_export(session, request, tmp_path / name, actor=NURSE, now=now, settings=ExportSettings())

    first = by_arm("a", "A", now=AS_OF + dt.timedelta(hours=1))
    assert list(_csv(first, "patients.csv")["patient_id"]) == ["S9-001"]
    patient_records.correct_randomization(
        session,
        NURSE,
        patient,
        reason="arm entered wrongly",
        randomization_date=patient.randomization_date,
        arm="B",
        now=LATER - DAY,
    )
    session.flush()
    assert by_arm("b", "A").zip_path.read_bytes() == first.zip_path.read_bytes()
    assert list(_csv(by_arm("c", "B"), "patients.csv")["patient_id"]) == []
    assert list(_csv(by_arm("d", "B", as_of=LATER), "patients.csv")["patient_id"]) == ["S9-001"]
    assert list(_csv(by_arm("e", "A", as_of=LATER), "patients.csv")["patient_id"]) == []
