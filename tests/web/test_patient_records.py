"""Patient record edits, the monitor and data-manager roles, and record history, through the HTTP client."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from qol_app.models import AuditEvent, Response, Timepoint
from qol_app.services import patient_records, timepoints, treatment_events
from qol_app.services.audit import Actor
from qol_app.services.patient_records import DisplayPreference
from tests.factories import add_response, isolated_client, login, no_csrf

ACTOR = Actor.system("tests")


@pytest.fixture
def ward(app, session, factory, now):
    no_csrf(app)
    site = factory.site(code="PR1")
    other = factory.site(code="PR2")
    patient = factory.patient(site, arm="A", randomization_date=dt.date(2026, 3, 1), phone="13800000000").patient
    timepoints.reconcile_patient(session, ACTOR, patient, now)
    return {
        "site": site,
        "other": other,
        "patient": patient,
        "nurse": factory.staff("nurse", sites=[site]),
        "investigator": factory.staff("investigator", sites=[site]),
        "monitor": factory.staff("monitor", sites=[site]),
        "manager": factory.staff("data_manager"),
        "admin": factory.staff("admin"),
    }


def _client(app, user):
    client = isolated_client(app)
    login(client, user)
    return client


def test_nurse_edits_contact_language_and_time_zone_with_a_reason(app, session, ward, now):
    p = ward["patient"]
    client = _client(app, ward["nurse"])
    url = f"/staff/patients/{p.id}/details"
    page = client.get(url).get_data(as_text=True)
    assert 'value="13800000000"' in page
    typed = {"email": "li@example.cn", "phone": "13900000000", "language": "en", "timezone": "Asia/Urumqi"}
    refused = client.post(url, data=typed | {"reason": ""})
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and 'value="li@example.cn"' in body and 'value="Asia/Urumqi"' in body
    bad_zone = client.post(url, data=typed | {"timezone": "Urumqi", "reason": "moved"})
    assert bad_zone.status_code == 400 and 'value="Urumqi"' in bad_zone.get_data(as_text=True)
    baseline = session.scalar(select(Timepoint).where(Timepoint.patient_id == p.id, Timepoint.key == "baseline"))
    opens = baseline.opens_at
    assert client.post(url, data=typed | {"reason": "moved to Urumqi"}).status_code == 302
    session.refresh(p)
    assert (p.email, p.phone, p.language, p.timezone) == ("li@example.cn", "13900000000", "en", "Asia/Urumqi")
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "patient_details")).one()
    assert event.reason == "moved to Urumqi" and event.new["timezone"] == "Asia/Urumqi"
    assert "13900000000" not in str(event.new) and "li@example.cn" not in str(event.new)  # the trail keeps no contacts
    session.refresh(baseline)
    assert baseline.opens_at - opens == dt.timedelta(hours=2)  # re-planned in the new zone
    assert client.post(url, data=typed | {"reason": "again"}).status_code == 200  # nothing changed


def test_display_preferences_come_from_the_registry(app, session, ward, monkeypatch):
    monkeypatch.setitem(patient_records.DISPLAY_PREFERENCES, "test_pref", DisplayPreference("test_pref", "bool", False))
    p = ward["patient"]
    client = _client(app, ward["nurse"])
    url = f"/staff/patients/{p.id}/details"
    assert 'name="pref_test_pref"' in client.get(url).get_data(as_text=True)
    data = {"phone": "13800000000", "language": "zh_Hans", "pref_test_pref": "y", "reason": "asked for it"}
    assert client.post(url, data=data).status_code == 302
    session.refresh(p)
    assert p.display_preferences == {"test_pref": True}


def test_status_change_goes_through_set_patient_status_and_keeps_the_form_on_error(app, session, ward):
    p = ward["patient"]
    client = _client(app, ward["nurse"])
    future = client.post(f"/staff/patients/{p.id}/status", data={"status": "died", "date": "2027-01-01", "reason": "x"})
    body = future.get_data(as_text=True)
    assert future.status_code == 422 and "in the future" in body and 'value="2027-01-01"' in body
    ok = {"status": "withdrawn", "date": "2026-03-09", "reason": "withdrew consent"}
    assert client.post(f"/staff/patients/{p.id}/status", data=ok).status_code == 302
    session.refresh(p)
    assert (p.status, p.status_date) == ("withdrawn", dt.date(2026, 3, 9))


def test_a_rejected_event_comes_back_with_every_value_typed(app, session, ward):
    p = ward["patient"]
    client = _client(app, ward["nurse"])
    typed = {"kind": "intrathecal_dose", "date": "2027-06-01", "number": "4", "drug": "pemetrexed"}
    response = client.post(f"/staff/patients/{p.id}/events", data=typed)
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and "in the future" in body
    assert '<option selected value="intrathecal_dose">' in body
    assert 'value="2027-06-01"' in body and 'value="4"' in body and 'value="pemetrexed"' in body


def test_investigator_corrects_randomization_and_answered_forms_stay(app, session, ward, now):
    p = ward["patient"]
    treatment_events.record_event(session, ACTOR, p, kind="intrathecal_dose", date=dt.date(2026, 3, 5), now=now)
    diaries = {
        tp.key: tp
        for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == p.id, Timepoint.kind == "diary"))
    }
    answered = diaries[sorted(diaries)[0]]
    add_response(session, answered, at=now)
    url = f"/staff/patients/{p.id}/randomization"
    assert _client(app, ward["nurse"]).get(url).status_code == 403
    client = _client(app, ward["investigator"])
    no_reason = client.post(url, data={"arm": "B", "randomization_date": "2026-02-27", "reason": ""})
    assert no_reason.status_code == 400 and 'value="2026-02-27"' in no_reason.get_data(as_text=True)
    after_event = client.post(url, data={"arm": "A", "randomization_date": "2026-03-06", "reason": "typo"})
    assert after_event.status_code == 400 and "after the first recorded event" in after_event.get_data(as_text=True)
    ok = client.post(url, data={"arm": "B", "randomization_date": "2026-02-27", "reason": "allocation mis-typed"})
    assert ok.status_code == 302
    session.expire_all()  # the request wrote through its own session
    assert (p.arm, p.randomization_date) == ("B", dt.date(2026, 2, 27))
    rows = {tp.key: tp for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == p.id))}
    assert rows["baseline"].target_date == dt.date(2026, 2, 27)  # not started: moved
    assert rows[answered.key].status != "cancelled" and rows[answered.key].target_date == answered.target_date
    others = [tp for key, tp in rows.items() if key in diaries and key != answered.key]
    assert others and all(tp.status == "cancelled" for tp in others)  # arm B has no intrathecal diary
    assert session.scalar(select(Response).where(Response.timepoint_id == answered.id)) is not None
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "correct_randomization")).one()
    assert event.old == {"arm": "A", "randomization_date": "2026-03-01"} and event.reason == "allocation mis-typed"
    # Admins may correct too (any site).
    admin = _client(app, ward["admin"])
    assert admin.post(url, data={"arm": "A", "randomization_date": "2026-02-27", "reason": "back"}).status_code == 302


def test_monitor_reads_patient_and_history_but_every_write_is_refused(app, session, ward):
    p = ward["patient"]
    client = _client(app, ward["monitor"])
    page = client.get(f"/staff/patients/{p.id}").get_data(as_text=True)
    assert p.study_id in page and "13800000000" in page  # site monitors verify source data
    assert "Record a treatment event" not in page and "Edit details" not in page and "Record history" in page
    assert client.get(f"/staff/patients/{p.id}/history").status_code == 200
    assert client.get("/staff/").status_code == 200  # compliance
    for url, data in [
        (f"/staff/patients/{p.id}/events", {"kind": "progression", "date": "2026-03-09"}),
        (f"/staff/patients/{p.id}/details", {"language": "en", "reason": "x"}),
        (f"/staff/patients/{p.id}/status", {"status": "lost", "date": "2026-03-09", "reason": "x"}),
        ("/staff/patients/new", {"study_id": "PR1-900", "site_id": ward["site"].id}),
    ]:
        assert client.post(url, data=data).status_code == 403, url
    other = _client(app, ward["monitor"])
    foreign = isolated_client(app)
    assert foreign.get(f"/staff/patients/{p.id}").status_code == 302
    assert other.get("/staff/patients").status_code == 200


def test_data_manager_sees_every_site_pseudonymously_and_gives_missed_reasons(app, session, ward, factory, now):
    far = factory.patient(ward["other"], phone="13700000000").patient
    timepoints.reconcile_patient(session, ACTOR, far, now)
    tp = session.scalar(select(Timepoint).where(Timepoint.patient_id == far.id, Timepoint.key == "baseline"))
    tp.status, tp.opens_at, tp.closes_at, tp.grace_closes_at = (
        "missed",
        now - dt.timedelta(days=20),
        now - dt.timedelta(days=15),
        now - dt.timedelta(days=12),
    )
    session.flush()
    client = _client(app, ward["manager"])
    page = client.get(f"/staff/patients/{far.id}").get_data(as_text=True)
    assert far.study_id in page and "13700000000" not in page and "Reminders to" not in page
    assert (
        client.post(f"/staff/patients/{far.id}/events", data={"kind": "progression", "date": "2026-03-09"}).status_code
        == 403
    )
    url = f"/staff/patients/{far.id}/timepoints/{tp.id}/reason"
    assert client.post(url, data={"missed_reason": "too_ill"}).status_code == 302
    session.refresh(tp)
    assert tp.missed_reason == "too_ill" and tp.missed_reason_by == ward["manager"].id
    patient_records.update_details(
        session, ACTOR, far, {"phone": "13600000000"}, reason="new phone", languages=["en", "zh_Hans"], now=now
    )
    history = client.get(f"/staff/patients/{far.id}/history").get_data(as_text=True)
    assert "Details changed" in history and "new phone" in history and "13600000000" not in history


def test_history_pages_show_who_what_from_what_to_what_and_why(app, session, ward, now):
    p = ward["patient"]
    nurse = _client(app, ward["nurse"])
    nurse.post(f"/staff/patients/{p.id}/events", data={"kind": "systemic_cycle", "date": "2026-03-02"})
    event = p.events[-1]
    nurse.post(f"/staff/patients/{p.id}/events/{event.id}/move", data={"date": "2026-03-03", "reason": "delayed: ANC"})
    assert nurse.get(f"/staff/patients/{p.id}/history").status_code == 403  # nurses: not in the list
    client = _client(app, ward["investigator"])
    page = client.get(f"/staff/patients/{p.id}/history").get_data(as_text=True)
    assert (
        "Event changed" in page
        and "delayed: ANC" in page
        and "<code>2026-03-02</code> → <code>2026-03-03</code>" in page
    )
    assert ward["nurse"].full_name in page and "Enrolled" in page
    # A response's history follows its revisions.
    tp = session.scalar(select(Timepoint).where(Timepoint.patient_id == p.id, Timepoint.key == "baseline"))
    response = add_response(session, tp, at=now)
    from qol_app.services import responses

    responses.correct_response(session, ward["investigator"], response, {"q1": 2}, "paper says 2", now, actor=ACTOR)
    revisions = session.scalars(select(Response).where(Response.timepoint_id == tp.id)).all()
    page = client.get(f"/staff/patients/{p.id}/responses/{revisions[0].id}/history").get_data(as_text=True)
    assert "paper says 2" in page and "Event changed" not in page


def test_admin_audit_search_filters_and_pages(app, session, ward, factory, now):
    p = ward["patient"]
    for n in range(3):
        patient_records.update_details(
            session,
            ACTOR,
            p,
            {"language": ["en", "zh_Hans"][n % 2]},
            reason=f"r{n}",
            languages=["en", "zh_Hans"],
            now=now,
        )
    client = _client(app, ward["admin"])
    page = client.get("/staff/admin/audit", query_string={"entity": "patients", "entity_id": str(p.id)})
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "r0" in body and "r2" in body
    assert "r1" not in client.get("/staff/admin/audit", query_string={"actor": "system:nobody"}).get_data(as_text=True)
    by_actor = client.get("/staff/admin/audit", query_string={"actor": "system:tests", "date_from": "2026-03-10"})
    assert "r1" in by_actor.get_data(as_text=True)
    assert "r1" not in client.get("/staff/admin/audit", query_string={"date_to": "2026-03-09"}).get_data(as_text=True)
    unknown = client.get("/staff/admin/audit", query_string={"actor": "no.such.user"})
    assert unknown.status_code == 400 and 'value="no.such.user"' in unknown.get_data(as_text=True)
    import qol_app.nurse.history as history

    history.PAGE = 2
    try:
        first = client.get("/staff/admin/audit", query_string={"entity": "patients"}).get_data(as_text=True)
        assert "Older entries" in first
        import re

        older = re.search(r'href="([^"]*before=\d+)"', first).group(1).replace("&amp;", "&")
        second = client.get(older).get_data(as_text=True)
        assert "entity=patients" in older and "r0" in second and "r2" not in second
    finally:
        history.PAGE = 50
    assert _client(app, ward["investigator"]).get("/staff/admin/audit").status_code == 403
