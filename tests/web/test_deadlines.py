"""Deadlines said one way (issue 14 point 8): "please answer by <on-time end>", then "late, still
accepted until <grace end>", in the patient's pages, the nurses' pages and the reminders alike,
as local dates without seconds."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from qol_app.i18n import local_datetime
from qol_app.models import Timepoint
from qol_app.scheduler.jobs import run_sweep
from qol_app.services import treatment_events
from qol_app.services.audit import Actor
from tests.db.conftest import RecordingChannel
from tests.factories import isolated_client, login, no_csrf, sign_in

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def test_patient_nurse_and_reminder_give_the_same_two_dates(app, session, factory):
    no_csrf(app)
    site = factory.site(code="DL1")
    nurse = factory.staff("nurse", sites=[site], language="en")
    enrolled = factory.patient(
        site,
        arm="B",
        language="en",
        randomization_date=dt.date(2026, 3, 2),
        enrolled_at=dt.datetime(2026, 3, 2, 2, tzinfo=dt.UTC),
        phone="138 0000 0003",
    )
    patient = enrolled.patient
    treatment_events.record_event(
        session,
        Actor("staff", str(nurse.id)),
        patient,
        kind="systemic_cycle",
        date=dt.date(2026, 3, 4),
        now=dt.datetime(2026, 3, 4, 4, tzinfo=dt.UTC),
    )
    session.commit()
    tp = session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id, Timepoint.key == "sys-c1")).one()
    assert (tp.window_end, tp.grace_end) == (dt.date(2026, 3, 27), dt.date(2026, 3, 30))
    on_time, late = "Mar 27, 2026", "Mar 30, 2026"

    recorder = RecordingChannel()
    at = tp.opens_at + 9 * H  # 09:00 local on the first day of the window
    assert run_sweep(app, at, channels={"sms": recorder, "email": recorder}).ok
    (reminder,) = [m for m in recorder.sent if m.dedupe_key.startswith(f"tp:{tp.id}:")]
    assert "Please fill it in by March 27, 2026" in reminder.body

    def patient_home(when: dt.datetime) -> str:
        app.config["FROZEN_NOW"] = when
        phone = isolated_client(app)  # a fresh sign-in: sessions end after 30 idle minutes
        sign_in(phone, enrolled.token, enrolled.pin)
        return phone.get("/p/").get_data(as_text=True)

    home = patient_home(at + H)
    assert f"Please answer by {on_time}" in home and "Late" not in home

    app.config["FROZEN_NOW"] = tp.closes_at - 20 * H  # the window's last day: on the nurses' list
    staff = isolated_client(app)
    login(staff, nurse)
    dash = staff.get("/staff/").get_data(as_text=True)
    assert f"answer by {on_time}" in dash
    assert f"Please answer by {on_time}" in patient_home(tp.closes_at - 20 * H)

    home = patient_home(tp.closes_at + 10 * H)  # the day after the window: in grace
    assert f"Late, still accepted until {late}" in home and "Please answer by" not in home
    staff = isolated_client(app)
    login(staff, nurse)
    dash = staff.get("/staff/").get_data(as_text=True)
    assert f"late forms accepted until {late}" in dash
    assert not re.search(r"\d:\d\d:\d\d", dash + home)  # never seconds


def test_times_are_shown_to_the_minute_in_the_readers_format():
    moment = dt.datetime(2026, 3, 27, 8, 5, 42, tzinfo=dt.UTC)
    assert local_datetime(moment, "Asia/Shanghai", "en") == "Mar 27, 2026, 4:05\u202fPM"
    assert local_datetime(moment, "Asia/Shanghai", "zh_Hans") == "2026年3月27日 16:05"
