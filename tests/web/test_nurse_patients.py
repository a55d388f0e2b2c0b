"""Enrolment, the one-time QR card, link rotation, PIN, treatment events and missed-form reasons."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask_babel import force_locale, gettext
from sqlalchemy import select

from qol_app.auth import token_hash
from qol_app.models import AuditEvent, Patient, Timepoint, TreatmentEvent
from qol_app.passwords import check_secret
from qol_app.services import compliance, timepoints, treatment_events
from qol_app.services.audit import Actor
from tests.factories import add_timepoint, login, no_csrf

LINK_RE = re.compile(r"<code>(http[^<]+)</code>")
DAY = dt.timedelta(days=1)
PIN_RE = re.compile(r'class="pin(?: big)?">(?:<span class="label">[^<]*</span> )?<strong>(\d+)</strong>')


@pytest.fixture
def site(factory):
    return factory.site(code="S01")


@pytest.fixture
def nurse(app, client, factory, site):
    no_csrf(app)
    user = factory.staff("nurse", sites=[site])
    login(client, user)
    return user


def _enrol(client, site, study_id="S01-101", **extra):
    data = {
        "study_id": study_id,
        "site_id": site.id,
        "arm": "A",
        "randomization_date": "2026-03-09",
        "consent_date": "2026-03-08",
        "language": "zh_Hans",
        "timezone": "",
        "with_pin": "y",
    } | extra
    return client.post("/staff/patients/new", data=data)


def test_enrol_shows_link_once_as_qr_card_in_patient_language(client, session, site, nurse):
    response = _enrol(client, site)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert '<svg width="' in body and 'class="qr"' in body  # segno inline SVG, no <img>, no JS
    assert "<script" not in body and "style=" not in body
    # The card is rendered in the patient's language, whatever the nurse reads.
    assert '<section class="card" id="card" lang="zh-Hans"' in body
    with force_locale("zh_Hans"):
        assert gettext("Your quality-of-life questionnaires") in body
    link = LINK_RE.search(body).group(1)
    token = link.rsplit("/", 1)[1]
    pin = PIN_RE.search(body).group(1)
    patient = session.scalar(select(Patient).where(Patient.study_id == "S01-101"))
    assert patient.link_token_hash == token_hash(token) and token not in str(patient.__dict__)
    assert check_secret(patient.pin_hash, pin)
    assert patient.consent_date == dt.date(2026, 3, 8) and patient.arm == "A"
    # The baseline timepoint exists at once.
    keys = set(session.scalars(select(Timepoint.key).where(Timepoint.patient_id == patient.id)))
    assert "baseline" in keys
    # The patient page never shows the link again.
    page = client.get(f"/staff/patients/{patient.id}")
    assert page.status_code == 200
    page = page.get_data(as_text=True)
    assert token not in page and "<code>" not in page
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "enroll", AuditEvent.patient_id == patient.id))


def test_enrol_refuses_duplicate_and_other_site(client, factory, site, nurse):
    assert _enrol(client, site).status_code == 200
    again = _enrol(client, site)
    assert again.status_code == 400 and "already enrolled" in again.get_data(as_text=True)
    other = factory.site(code="S09")
    assert _enrol(client, other, study_id="S09-001").status_code == 400  # re-rendered: not a valid choice
    assert "S09-001" not in client.get("/staff/patients").get_data(as_text=True)


def test_rotate_link_needs_reason_and_invalidates_old_token(client, session, factory, site, nurse):
    enrolled = factory.patient(site)
    old_hash = enrolled.patient.link_token_hash
    url = f"/staff/patients/{enrolled.patient.id}/link"
    response = client.post(url, data={"reason": ""})
    assert response.status_code == 422 and enrolled.patient.link_token_hash == old_hash
    response = client.post(url, data={"reason": "card lost", "new_pin": "y"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    token = LINK_RE.search(body).group(1).rsplit("/", 1)[1]
    session.refresh(enrolled.patient)
    assert enrolled.patient.link_token_hash == token_hash(token) != old_hash
    assert check_secret(enrolled.patient.pin_hash, PIN_RE.search(body).group(1))
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "rotate_link"))
    assert event.reason == "card lost"


@pytest.mark.parametrize("action,pin", [("generate", ""), ("set", "4321"), ("remove", "")])
def test_pin_set_generate_remove(client, session, factory, site, nurse, action, pin):
    enrolled = factory.patient(site)
    url = f"/staff/patients/{enrolled.patient.id}/pin"
    assert client.post(url, data={"action": action, "pin": pin, "reason": ""}).status_code == 422
    assert check_secret(enrolled.patient.pin_hash, "123456")  # no reason: unchanged
    response = client.post(url, data={"action": action, "pin": pin, "reason": "forgotten"})
    session.refresh(enrolled.patient)
    if action == "remove":
        assert response.status_code == 302 and enrolled.patient.pin_hash is None
    else:
        shown = PIN_RE.search(response.get_data(as_text=True)).group(1)
        assert check_secret(enrolled.patient.pin_hash, shown)
        assert action != "set" or shown == "4321"


def test_recording_intrathecal_dose_creates_diary_timepoints(client, session, factory, site, nurse):
    enrolled = factory.patient(site, arm="A", randomization_date=dt.date(2026, 3, 1))
    pid = enrolled.patient.id
    response = client.post(
        f"/staff/patients/{pid}/events", data={"kind": "intrathecal_dose", "date": "2026-03-09", "drug": "pemetrexed"}
    )
    assert response.status_code == 302
    event = session.scalar(select(TreatmentEvent).where(TreatmentEvent.patient_id == pid))
    assert event.kind == "intrathecal_dose" and event.number == 1 and event.created_by == nurse.id
    diaries = session.scalars(select(Timepoint).where(Timepoint.patient_id == pid, Timepoint.kind == "diary")).all()
    assert {tp.target_date for tp in diaries} == {dt.date(2026, 3, 9) + dt.timedelta(days=d) for d in range(1, 8)}
    page = client.get(f"/staff/patients/{pid}")
    assert page.status_code == 200 and "Diary 2026-03-10" in page.get_data(as_text=True)


def test_moving_and_deleting_an_event_require_a_reason(client, session, factory, site, nurse):
    enrolled = factory.patient(site, arm="B", randomization_date=dt.date(2026, 2, 1))
    pid = enrolled.patient.id
    client.post(
        f"/staff/patients/{pid}/events",
        data={"kind": "systemic_cycle", "date": "2026-02-02", "cycle_length_days": "21"},
    )
    event = session.scalar(select(TreatmentEvent).where(TreatmentEvent.patient_id == pid))
    move = f"/staff/patients/{pid}/events/{event.id}/move"
    assert client.get(move).status_code == 200
    response = client.post(move, data={"date": "2026-02-05", "reason": ""})
    assert response.status_code == 422 and event.date == dt.date(2026, 2, 2)
    response = client.post(move, data={"date": "2026-02-05", "reason": "delayed: neutropenia"})
    assert response.status_code == 302
    session.refresh(event)
    assert event.date == dt.date(2026, 2, 5)
    sys_tp = session.scalar(select(Timepoint).where(Timepoint.patient_id == pid, Timepoint.key == "sys-c1"))
    assert sys_tp.target_date == dt.date(2026, 2, 25)  # cycle day 21: the administration day is day 1
    delete = f"/staff/patients/{pid}/events/{event.id}/delete"
    client.post(delete, data={"reason": ""})
    session.refresh(event)
    assert event.deleted_at is None
    client.post(delete, data={"reason": "entered for the wrong patient"})
    session.refresh(event)
    session.refresh(sys_tp)
    assert event.deleted_at is not None and sys_tp.status == "cancelled"
    reasons = set(
        session.scalars(select(AuditEvent.reason).where(AuditEvent.action.in_(("move_event", "delete_event"))))
    )
    assert reasons == {"delayed: neutropenia", "entered for the wrong patient"}


def test_death_makes_later_forms_not_expected(client, session, factory, site, nurse):
    enrolled = factory.patient(site, arm="B", randomization_date=dt.date(2026, 1, 1))
    pid = enrolled.patient.id
    client.post(f"/staff/patients/{pid}/events", data={"kind": "systemic_cycle", "date": "2026-02-20"})
    assert (
        client.post(
            f"/staff/patients/{pid}/status", data={"status": "died", "date": "2026-03-01", "reason": ""}
        ).status_code
        == 422
    )
    assert enrolled.patient.status == "active"
    client.post(
        f"/staff/patients/{pid}/status", data={"status": "died", "date": "2026-03-01", "reason": "family called"}
    )
    session.refresh(enrolled.patient)
    assert enrolled.patient.status == "died"
    sys_tp = session.scalar(select(Timepoint).where(Timepoint.patient_id == pid, Timepoint.key == "sys-c1"))
    assert sys_tp.status == "not_expected" and sys_tp.not_expected_reason == "died"

    # A recorded death stays recorded: another status is refused, with what was typed kept.
    page = client.post(
        f"/staff/patients/{pid}/status", data={"status": "withdrawn", "date": "2026-03-02", "reason": "family"}
    )
    assert page.status_code == 422 and "A recorded death stays recorded" in page.get_data(as_text=True)
    assert "This corrects a death recorded in error" in page.get_data(as_text=True)
    session.refresh(enrolled.patient)
    assert (enrolled.patient.status, enrolled.patient.status_date) == ("died", dt.date(2026, 3, 1))
    # Its correction is its own act: audited as correct_death, the forms come back.
    fixed = client.post(
        f"/staff/patients/{pid}/status",
        data={"status": "active", "reason": "death was of another patient", "correct_death": "y"},
    )
    assert fixed.status_code == 302
    session.refresh(enrolled.patient)
    session.refresh(sys_tp)
    assert enrolled.patient.status == "active" and sys_tp.not_expected_reason is None
    assert session.scalar(select(AuditEvent.reason).where(AuditEvent.action == "correct_death")) == (
        "death was of another patient"
    )


def test_missed_reason_required_listed_until_given_and_audited(client, session, factory, site, nurse, now):
    enrolled = factory.patient(site)
    tp = add_timepoint(session, enrolled.patient, "sys-c1", status="missed", target=now.date() - dt.timedelta(days=10))
    dash = client.get("/staff/").get_data(as_text=True)
    assert "Missed forms without a reason" in dash and f"/timepoints/{tp.id}/reason" in dash
    url = f"/staff/patients/{enrolled.patient.id}/timepoints/{tp.id}/reason"
    other = client.post(url, data={"missed_reason": "other", "text": "  "})
    assert other.status_code == 422 and "Please describe the reason." in other.get_data(as_text=True)  # on the field
    assert tp.missed_reason is None
    assert client.post(url, data={"missed_reason": "bogus"}).status_code == 422 and tp.missed_reason is None
    assert client.post(url, data={"missed_reason": "hospitalised"}).status_code == 302
    session.refresh(tp)
    assert tp.missed_reason == "hospitalised" and tp.missed_reason_by == nurse.id
    assert f"/timepoints/{tp.id}/reason" not in client.get("/staff/").get_data(as_text=True)
    # Changing an earlier reason needs a reason for the change.
    assert client.post(url, data={"missed_reason": "too_ill"}).status_code == 422
    session.refresh(tp)
    assert tp.missed_reason == "hospitalised"
    client.post(url, data={"missed_reason": "too_ill", "reason": "ward confirmed"})
    session.refresh(tp)
    assert tp.missed_reason == "too_ill"
    rows = session.scalars(select(AuditEvent).where(AuditEvent.action == "missed_reason").order_by(AuditEvent.id)).all()
    assert [r.new["missed_reason"] for r in rows] == ["hospitalised", "too_ill"]
    assert rows[1].reason == "ward confirmed" and rows[1].old["missed_reason"] == "hospitalised"


def test_reason_refused_for_a_form_that_is_not_missed(client, session, factory, site, nurse, now):
    enrolled = factory.patient(site)
    tp = add_timepoint(session, enrolled.patient, "sys-c1", status="open", target=now.date())
    url = f"/staff/patients/{enrolled.patient.id}/timepoints/{tp.id}/reason"
    response = client.post(url, data={"missed_reason": "forgot"})
    assert response.status_code == 422 and tp.missed_reason is None


def test_intrathecal_dose_entered_5_days_late_is_not_offered_not_missed(client, session, factory, site, nurse, now):
    """CLINICAL.md §2 late entry: diary days whose grace had ended when the dose was recorded are
    missed for the administrative reason not_offered, off the nurse's reason list and counted
    apart; the days still open are offered as usual."""
    enrolled = factory.patient(site, arm="A", randomization_date=now.date() - dt.timedelta(days=6))
    pid = enrolled.patient.id
    dose = now.date() - dt.timedelta(days=5)  # 2026-03-05, recorded on 2026-03-10 12:00 local
    assert (
        client.post(f"/staff/patients/{pid}/events", data={"kind": "intrathecal_dose", "date": dose}).status_code == 302
    )
    diaries = {
        (tp.target_date - dose).days: tp
        for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == pid, Timepoint.kind == "diary"))
    }
    assert sorted(diaries) == list(range(1, 8))
    for day in (1, 2, 3):  # grace (the next day) over before the dose was entered
        assert (diaries[day].status, diaries[day].missed_reason) == ("missed", "not_offered")
    assert diaries[4].status == "overdue" and diaries[4].missed_reason is None  # still accepted today
    assert diaries[5].status == "open" and [diaries[d].status for d in (6, 7)] == ["scheduled", "scheduled"]
    create = session.scalars(
        select(AuditEvent).where(AuditEvent.entity_type == "timepoint", AuditEvent.action == "create")
    ).all()
    not_offered = sorted(a.new["key"] for a in create if a.new.get("missed_reason") == "not_offered")
    # and the baseline: its grace had ended before the patient was enrolled
    assert not_offered == ["baseline", *(f"diary-{dose + dt.timedelta(days=d)}" for d in (1, 2, 3))]
    # never on the nurse's list, never replaced by a nurse's reason
    dash = client.get("/staff/").get_data(as_text=True)
    assert all(f"/timepoints/{diaries[d].id}/reason" not in dash for d in (1, 2, 3))
    url = f"/staff/patients/{pid}/timepoints/{diaries[1].id}/reason"
    response = client.post(url, data={"missed_reason": "forgot", "reason": "try"})
    assert response.status_code == 422 and diaries[1].missed_reason == "not_offered"
    # the compliance table counts them apart from the patient's misses
    total = compliance.totals(compliance.compute(session, Patient.id == pid, now), "diary", "A")
    assert (total.not_offered, total.missed, total.expected) == (3, 0, 3)
    assert "Not offered" in dash


def _dose_corrected_five_days_earlier(session, factory, site, now, correct):
    """A dose of 8 March recorded that day (diaries 9-15 March), corrected on 10 March (noon) to
    3 March by ``correct(event, date)``: diaries 4-10 March. Cycle 1, given and recorded on
    8 March, is corrected to 10 February: its form's window (26 February - 4 March) lies wholly
    before the correction, while the old one (25-31 March) had not opened yet."""
    enrolled = factory.patient(site, arm="A", randomization_date=dt.date(2026, 2, 9), enrolled_at=now - 29 * DAY)
    patient = enrolled.patient
    recorded = now - 2 * DAY
    dose, _r = treatment_events.record_event(
        session, Actor.system("tests"), patient, kind="intrathecal_dose", date=dt.date(2026, 3, 8), now=recorded
    )
    cycle, _r = treatment_events.record_event(
        session, Actor.system("tests"), patient, kind="systemic_cycle", date=dt.date(2026, 3, 8), now=recorded
    )
    timepoints.sweep_statuses(session, recorded + DAY)  # 9 March: diary 9 March open
    session.flush()
    correct(dose, dt.date(2026, 3, 3))
    correct(cycle, dt.date(2026, 2, 10))
    session.expire_all()
    return {
        tp.key: tp
        for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id).order_by(Timepoint.id))
    }


def _assert_never_offered_days_are_not_offered(tps):
    for day in range(4, 9):  # grace (the next day) over when the correction was recorded
        tp = tps[f"diary-2026-03-0{day}"]
        assert (tp.status, tp.missed_reason) == ("missed", "not_offered"), day
    assert tps["diary-2026-03-09"].status == "overdue" and tps["diary-2026-03-09"].missed_reason is None
    assert tps["diary-2026-03-10"].status == "open"
    assert all(tps[f"diary-2026-03-{d}"].status == "cancelled" for d in range(11, 16))
    assert (tps["sys-c1"].status, tps["sys-c1"].missed_reason) == ("missed", "not_offered")
    # No patient-related miss without a reason came out of the correction (baseline: enrolled late).
    assert [k for k, tp in tps.items() if tp.status == "missed" and tp.missed_reason is None] == []


def test_an_event_date_corrected_into_the_past_keeps_never_offered_days_not_offered(session, factory, site, now):
    """CLINICAL.md §2 late entry, for a correction: the re-planned days whose window had closed when
    the correction was recorded were never offered; days still open are offered."""

    def correct(event, date):
        treatment_events.move_event(session, Actor.system("tests"), event, date=date, reason="wrong day", now=now)

    _assert_never_offered_days_are_not_offered(_dose_corrected_five_days_earlier(session, factory, site, now, correct))


def test_the_nurse_page_correcting_an_event_date_into_the_past(client, session, factory, site, nurse, now):
    def correct(event, date):
        url = f"/staff/patients/{event.patient_id}/events/{event.id}/move"
        assert client.post(url, data={"date": date.isoformat(), "reason": "wrong day"}).status_code == 302

    tps = _dose_corrected_five_days_earlier(session, factory, site, now, correct)
    _assert_never_offered_days_are_not_offered(tps)
    dash = client.get("/staff/").get_data(as_text=True)
    assert all(f"/timepoints/{tps[f'diary-2026-03-0{d}'].id}/reason" not in dash for d in range(4, 9))


def test_a_shorter_window_after_the_next_cycle_stays_a_patient_miss(session, factory, site, now):
    """The next cycle, recorded early, closes cycle 1's form window the day before it: the form was
    offered (its window was open until then), so a miss is the patient's, not administrative."""
    enrolled = factory.patient(site, arm="B", randomization_date=dt.date(2026, 2, 1), enrolled_at=now - 40 * DAY)
    actor = Actor.system("tests")
    treatment_events.record_event(
        session, actor, enrolled.patient, kind="systemic_cycle", date=dt.date(2026, 2, 1), now=now - 37 * DAY
    )
    # Cycle 1's form: window 18-24 February, open since 18 February. Cycle 2 given on 20 February,
    # recorded on 23 February: the window ends on 19 February.
    treatment_events.record_event(
        session, actor, enrolled.patient, kind="systemic_cycle", date=dt.date(2026, 2, 20), now=now - 15 * DAY
    )
    session.expire_all()
    tp = session.scalars(
        select(Timepoint).where(Timepoint.patient_id == enrolled.patient.id, Timepoint.key == "sys-c1")
    ).one()
    assert tp.grace_end == dt.date(2026, 2, 19)
    assert (tp.status, tp.missed_reason) == ("missed", None)
