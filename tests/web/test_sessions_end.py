"""A new PIN ends the patient's sessions; a password change ends the staff member's other sessions."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from qol_app.models import LoginSession
from tests.factories import STAFF_PASSWORD, isolated_client, login, no_csrf, sign_in


@pytest.mark.parametrize("action", ["generate", "set", "remove"])
def test_a_new_pin_ends_the_patients_sessions(app, factory, session, action):
    no_csrf(app)
    site = factory.site()
    nurse = factory.staff("nurse", sites=[site])
    enrolled = factory.patient(site, language="en")
    phone, tablet = isolated_client(app), isolated_client(app)
    for device in (phone, tablet):
        assert sign_in(device, enrolled.token).status_code == 302
        assert device.get("/p/").status_code == 200
    staff = isolated_client(app)
    login(staff, nurse)
    response = staff.post(
        f"/staff/patients/{enrolled.patient.id}/pin", data={"action": action, "pin": "4321", "reason": "card lost"}
    )
    assert response.status_code in (200, 302)
    for device in (phone, tablet):
        assert device.get("/p/").headers["Location"].startswith("/p/signed-out")
    rows = session.scalars(select(LoginSession).where(LoginSession.subject_type == "patient")).all()
    assert {r.end_reason for r in rows} == {"pin_changed"}


def test_changing_ones_password_ends_the_other_sessions_only(app, factory, session):
    no_csrf(app)
    nurse = factory.staff("nurse", sites=[factory.site()])
    desk, ward = isolated_client(app), isolated_client(app)
    login(desk, nurse)
    login(ward, nurse)
    changed = desk.post("/staff/account", data={"current": STAFF_PASSWORD, "new": "a brand new password"})
    assert changed.status_code == 302
    assert desk.get("/staff/").status_code == 200  # the device it was changed on stays signed in
    assert ward.get("/staff/").headers["Location"].startswith("/staff/login")
    reasons = sorted(r.end_reason or "" for r in session.scalars(select(LoginSession)))
    assert reasons == ["", "password_reset"]


def test_an_admin_reset_ends_every_session_of_the_account(app, factory, session):
    no_csrf(app)
    site = factory.site()
    nurse, admin = factory.staff("nurse", sites=[site]), factory.staff("admin")
    ward = isolated_client(app)
    login(ward, nurse)
    office = isolated_client(app)
    login(office, admin)
    office.post(f"/staff/admin/users/{nurse.id}/password", data={"password": "reset password 1", "reason": "leak"})
    assert ward.get("/staff/").headers["Location"].startswith("/staff/login")
    assert office.get("/staff/").status_code == 200


def test_a_disabled_account_is_refused_on_its_next_request_even_with_a_live_session(app, factory, session):
    """The request-time check, apart from the sessions that disabling ends: an account made
    inactive any other way (a script, the database) cannot use the session it still has."""
    from sqlalchemy import update

    from qol_app.models import StaffUser

    no_csrf(app)
    nurse = factory.staff("nurse", sites=[factory.site()])
    ward = isolated_client(app)
    login(ward, nurse)
    assert ward.get("/staff/").status_code == 200
    session.execute(update(StaffUser).where(StaffUser.id == nurse.id).values(active=False))
    session.commit()
    assert ward.get("/staff/").headers["Location"].startswith("/staff/login")
    row = session.scalars(select(LoginSession).where(LoginSession.subject_id == nurse.id)).one()
    session.refresh(row)
    assert row.end_reason == "disabled"
