"""Data locks: every write route (staff and patient) refuses locked data, and accepts it again after release.

The routes come from ``app.url_map`` and their declared lock target (``qol_app.locking``), so a new
write route is either declared (and then walked here) or answers 500 and fails the first test.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pytest
from sqlalchemy import func, select

from qol_app.locking import WRITE_METHODS, declared_target, is_declared
from qol_app.models import AuditEvent, DataLock, Patient, Timepoint, TreatmentEvent
from qol_app.services import locks, timepoints, treatment_events
from qol_app.services.audit import Actor
from tests.factories import (
    add_alert,
    add_call_task,
    add_response,
    hidden_fields,
    isolated_client,
    login,
    no_csrf,
    sign_in,
)

ACTOR = Actor.system("tests")


def _write_rules(app, target):
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.methods & WRITE_METHODS and declared_target(app.view_functions[rule.endpoint]) == target
    ]


def test_every_write_route_declares_what_it_writes(app):
    undeclared = [
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.methods & WRITE_METHODS and not is_declared(app.view_functions[rule.endpoint])
    ]
    assert undeclared == []
    # The staff patient routes and the patient's survey routes are the locked ones.
    assert {r.endpoint for r in _write_rules(app, "patient")} == set(STAFF_DATA)
    assert {r.endpoint for r in _write_rules(app, "signed_in_patient")} == {
        "patient.respondent",
        "patient.page",
        "patient.review",
    }
    assert {r.endpoint for r in _write_rules(app, "site_form")} == {"nurse.enrol"}


def test_an_undeclared_write_route_is_refused(app):
    @app.post("/undeclared-test")
    def undeclared():  # pragma: no cover - the guard answers first
        return "written"

    no_csrf(app)
    response = app.test_client().post("/undeclared-test")
    assert response.status_code == 500 and b"written" not in response.data


class Ward:
    """One patient with everything a staff route can point at."""

    def __init__(self, session, factory, now) -> None:
        self.site = factory.site(code="LK1")
        self.investigator = factory.staff("investigator", sites=[self.site])
        self.patient = factory.patient(
            self.site,
            arm="A",
            randomization_date=dt.date(2026, 1, 1),
            enrolled_at=dt.datetime(2026, 1, 1, 4, tzinfo=dt.UTC),  # in time: the baseline was offered
        ).patient
        # Planned at enrolment, as the enrolment page does: a baseline created only later, its
        # window closed by then, would never have been offered (not_offered, no nurse's reason).
        timepoints.reconcile_patient(session, ACTOR, self.patient, dt.datetime(2026, 1, 1, 4, tzinfo=dt.UTC))
        self.event, _ = treatment_events.record_event(
            session, ACTOR, self.patient, kind="systemic_cycle", date=dt.date(2026, 1, 5), now=now
        )
        rows = {tp.key: tp for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == self.patient.id))}
        self.baseline = rows["baseline"]
        self.alert = add_alert(session, self.patient, at=now - dt.timedelta(hours=1))
        self.response = add_response(session, rows["sys-c1"], at=now)
        self.task = add_call_task(session, self.baseline, at=now)

    def url(self, app, rule) -> str:
        from flask import url_for

        values = {}
        for arg in rule.arguments:
            values[arg] = {
                "patient_id": self.patient.id,
                "event_id": self.event.id,
                "timepoint_id": self.baseline.id,
                "alert_id": self.alert.id,
                "response_id": self.response.id,
                "instrument_id": "eortc_qlq_c30",
                "task_id": self.task.id,
            }[arg]
        with app.test_request_context():
            return url_for(rule.endpoint, **values)


#: Data that each route would accept (so "accepted after release" means a real change).
STAFF_DATA = {
    "nurse.rotate_link": {"reason": "card lost"},
    "nurse.set_pin": {"action": "generate", "reason": "forgotten"},
    "nurse.set_status": {"status": "lost", "date": "2026-03-09", "reason": "no answer for months"},
    "nurse.edit_details": {"language": "en", "reason": "prefers English"},
    "nurse.correct_randomization": {"arm": "A", "randomization_date": "2025-12-31", "reason": "typo"},
    "nurse.record_event": {"kind": "progression", "date": "2026-03-09"},
    "nurse.move_event": {"date": "2026-01-06", "reason": "delayed"},
    "nurse.delete_event": {"reason": "wrong patient"},
    "nurse.missed_reason": {"missed_reason": "too_ill"},
    "nurse.enter_form": {"entry_mode": "paper_transcribed", "entry_respondent": "self"},
    "nurse.correct_form": {"q1": "3", "correction_reason": "transcription error"},
    "nurse.acknowledge_alert": {"action": "called the patient"},
    "nurse.call_task": {"outcome": "no_answer"},
}


def _writes(session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent))


def test_staff_writes_are_refused_under_a_patient_lock_and_accepted_after_release(app, session, factory, now):
    no_csrf(app)
    ward = Ward(session, factory, now)
    # The baseline is missed by now (randomized 2026-01-01): the reason route has something to do.
    client = isolated_client(app)
    login(client, ward.investigator)
    lock = locks.lock(session, ACTOR, "patient", patient=ward.patient, reason="database lock", now=now)
    rules = _write_rules(app, "patient")
    before = _writes(session)
    for rule in rules:
        response = client.post(ward.url(app, rule), data=STAFF_DATA.get(rule.endpoint, {}))
        body = response.get_data(as_text=True)
        assert response.status_code == 423, f"{rule.endpoint} wrote locked data ({response.status_code})"
        assert "These data are locked" in body and "database lock" in body, rule.endpoint
    assert _writes(session) == before  # nothing was written, not even an audit row
    page = client.get(f"/staff/patients/{ward.patient.id}").get_data(as_text=True)
    assert "Locked since" in page and "Record a treatment event" not in page

    locks.release(session, ACTOR, lock, reason="query answered", now=now)
    statuses = {}
    for rule in rules:
        statuses[rule.endpoint] = client.post(ward.url(app, rule), data=STAFF_DATA.get(rule.endpoint, {})).status_code
    assert 423 not in statuses.values(), statuses
    assert session.scalar(
        select(TreatmentEvent).where(TreatmentEvent.patient_id == ward.patient.id, TreatmentEvent.kind == "progression")
    )
    actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.id > before)))
    assert {"record_event", "rotate_link", "patient_details", "missed_reason", "acknowledge_alert"} <= actions


@pytest.mark.parametrize("scope", ["trial", "site"])
def test_trial_and_site_locks_cover_enrolment_and_patients(app, session, factory, now, scope):
    no_csrf(app)
    ward = Ward(session, factory, now)
    other = factory.site(code="LK2")
    ward.investigator.memberships.append(type(ward.investigator.memberships[0])(site_id=other.id))
    session.flush()
    client = isolated_client(app)
    login(client, ward.investigator)
    locks.lock(session, ACTOR, scope, site=ward.site if scope == "site" else None, reason="interim analysis", now=now)
    enrol = {"study_id": "LK1-900", "site_id": ward.site.id, "arm": "B", "randomization_date": "2026-03-01"}
    assert client.post("/staff/patients/new", data=enrol | {"language": "zh_Hans"}).status_code == 423
    event = {"kind": "progression", "date": "2026-03-09"}
    assert client.post(f"/staff/patients/{ward.patient.id}/events", data=event).status_code == 423
    other_enrol = enrol | {"study_id": "LK2-900", "site_id": other.id, "language": "zh_Hans"}
    assert client.post("/staff/patients/new", data=other_enrol).status_code == (423 if scope == "trial" else 200)


def test_a_lock_takes_effect_at_its_moment(app, session, factory, now):
    no_csrf(app)
    ward = Ward(session, factory, now)
    client = isolated_client(app)
    login(client, ward.investigator)
    locks.lock(session, ACTOR, "trial", at=now + dt.timedelta(minutes=10), reason="cut-off at 12:10", now=now)
    url = f"/staff/patients/{ward.patient.id}/events"
    assert client.post(url, data={"kind": "progression", "date": "2026-03-09"}).status_code == 302
    app.config["FROZEN_NOW"] = now + dt.timedelta(minutes=20)
    assert client.post(url, data={"kind": "end_of_treatment", "date": "2026-03-09"}).status_code == 423
    with pytest.raises(ValueError, match="past"):
        locks.lock(session, ACTOR, "patient", patient=ward.patient, at=now - dt.timedelta(days=1), reason="x", now=now)


def test_patient_sees_closed_forms_under_a_lock_and_can_answer_after_release(app, session, factory, now):
    enrolled = factory.patient(factory.site(code="LK3"), language="en")
    tp = factory.timepoint(enrolled, respondent="self")
    client = isolated_client(app)
    assert sign_in(client, enrolled.token).status_code == 302
    page_url = f"/p/t/{tp.id}/eortc_qlq_c30/1"
    form = hidden_fields(client.get(page_url).get_data(as_text=True))
    lock = locks.lock(session, ACTOR, "patient", patient=enrolled.patient, reason="withdrawn data", now=now)
    before = _writes(session)
    for method, url in [
        ("GET", page_url),
        ("POST", page_url),
        ("GET", f"/p/t/{tp.id}"),
        ("POST", f"/p/t/{tp.id}/respondent"),
        ("POST", f"/p/t/{tp.id}/submit"),
    ]:
        response = client.open(url, method=method, data=form | {"q1": "2", "respondent": "self"})
        body = response.get_data(as_text=True)
        assert response.status_code == 423 and "The questionnaires are closed" in body, (method, url)
    home = client.get("/p/").get_data(as_text=True)
    assert "no longer collecting answers" in home and f"/p/t/{tp.id}" not in home
    assert _writes(session) == before
    # Signing out and in, and the page language, still work.
    assert client.post("/p/language", data={"csrf_token": form["csrf_token"], "lang": "en"}).status_code == 302

    locks.release(session, ACTOR, lock, reason="lock in error", now=now)
    form = hidden_fields(client.get(page_url).get_data(as_text=True))
    assert client.post(page_url, data=form | {"q1": "2", "nav": "next"}).status_code == 302
    assert session.scalar(select(AuditEvent).where(AuditEvent.id > before, AuditEvent.action == "save_answers"))


def test_scheduler_leaves_locked_patients_alone(app, session, factory, now):
    site = factory.site(code="LK4")
    locked = factory.patient(site).patient
    free = factory.patient(site).patient
    for patient in (locked, free):
        factory.timepoint(patient, key="due", opens_at=now - dt.timedelta(days=5), closes_at=now - dt.timedelta(days=3))
    locks.lock(session, ACTOR, "patient", patient=locked, reason="frozen", now=now)
    counts = timepoints.sweep_statuses(session, now)
    statuses = dict(
        session.execute(
            select(Timepoint.patient_id, Timepoint.status).where(Timepoint.patient_id.in_([locked.id, free.id]))
        ).all()
    )
    assert statuses == {locked.id: "open", free.id: "missed"} and counts["missed"] == 1


def test_lock_pages_for_admins_and_data_managers_lock_and_release_with_audit(app, session, factory, now):
    no_csrf(app)
    site = factory.site(code="LK5")
    patient = factory.patient(site).patient
    manager = factory.staff("data_manager")
    client = isolated_client(app)
    login(client, manager)
    refused = client.post("/staff/admin/locks", data={"scope": "patient", "study_id": patient.study_id, "reason": ""})
    assert refused.status_code == 422 and patient.study_id in refused.get_data(as_text=True)  # value kept
    ok = client.post("/staff/admin/locks", data={"scope": "patient", "study_id": patient.study_id, "reason": "clean"})
    assert ok.status_code == 302
    lock = session.scalars(select(DataLock)).one()
    assert lock.patient_id == patient.id and locks.lock_for(session, now, patient=patient) is not None
    assert client.post(f"/staff/admin/locks/{lock.id}/release", data={"reason": ""}).status_code == 422
    assert client.post(f"/staff/admin/locks/{lock.id}/release", data={"reason": "query"}).status_code == 302
    session.refresh(lock)
    assert lock.released_at is not None and locks.lock_for(session, now, patient=patient) is None
    audited = session.scalars(
        select(AuditEvent).where(AuditEvent.action.in_(("data_lock", "data_unlock"))).order_by(AuditEvent.id)
    ).all()
    assert [(e.action, e.reason, e.patient_id) for e in audited] == [
        ("data_lock", "clean", patient.id),
        ("data_unlock", "query", patient.id),
    ]
    page = client.get("/staff/admin/locks").get_data(as_text=True)
    assert patient.study_id in page and "released" in page


def test_a_site_or_patient_lock_without_its_target_is_refused_with_the_field_named(app, session, factory):
    """Found by the fuzz: the field's Optional() ended validation before the scope check, so a site
    lock with no site went on to look up site None."""
    no_csrf(app)
    factory.site(code="LK6")
    client = isolated_client(app)
    login(client, factory.staff("data_manager"))
    for data, said in (
        ({"scope": "site", "reason": "primary analysis"}, "Choose the site to lock."),
        ({"scope": "site", "site_id": "0", "reason": "primary analysis"}, "Choose the site to lock."),
        (
            {"scope": "patient", "study_id": "  ", "reason": "primary analysis"},
            "Enter the study id of the patient to lock.",
        ),
    ):
        refused = client.post("/staff/admin/locks", data=data)
        assert refused.status_code == 422 and said in refused.get_data(as_text=True), data
    session.expire_all()
    assert session.scalars(select(DataLock)).all() == []


def test_export_manifest_records_the_lock_state(app, session, factory, now):
    from qol_app.export.run import ExportRequest
    from qol_app.export.source import ExportFilters
    from qol_app.services.exports import run_export

    site = factory.site(code="LK6")
    patient = factory.patient(site).patient
    locks.lock(session, ACTOR, "site", site=site, reason="site closed", now=now - dt.timedelta(seconds=30))
    request = ExportRequest(formats=("csv",), filters=ExportFilters(), as_of=now)
    result = run_export(session, request, _tmp(app), actor=ACTOR, now=now)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(result.zip_path.read_bytes())).read("manifest.json"))
    assert manifest["data_lock"]["trial_locked"] is False
    assert [(e["scope"], e["site"]) for e in manifest["data_lock"]["locks"]] == [("site", "LK6")]
    assert "site closed" not in json.dumps(manifest)  # no free text in exports
    early = ExportRequest(formats=("csv",), filters=ExportFilters(), as_of=now - dt.timedelta(hours=1))
    result = run_export(session, early, _tmp(app), actor=ACTOR, now=now)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(result.zip_path.read_bytes())).read("manifest.json"))
    assert manifest["data_lock"] == {"trial_locked": False, "locks": []}
    assert session.get(Patient, patient.id) is not None


def _tmp(app):
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="qol-lock-export-"))
