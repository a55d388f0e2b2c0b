"""Staff are reachable: phone numbers from the admin page and ``qol users``; red alerts reach
the site's nurses by SMS and e-mail, each in her own language; log-only backends say so."""

from __future__ import annotations

import email
import email.policy
import json

from sqlalchemy import select

from qol_app.models import AuditEvent, OutboxMessage, StaffUser
from qol_app.notify.channels import build_channels
from qol_app.notify.templates import app_renderer
from qol_app.services import alerts, notifications
from tests.factories import add_alert, login, no_csrf
from tests.loopback import Answer, http_server, smtp_server


def test_admin_sets_a_staff_phone_and_email_with_audit(app, client, session, factory):
    no_csrf(app)
    admin = factory.staff("admin")
    nurse = factory.staff("nurse", sites=[factory.site()])
    login(client, admin)
    url = f"/staff/admin/users/{nurse.id}/contact"
    bad = client.post(url, data={"email": "nurse@example.org", "phone": "call me"}, follow_redirects=True)
    assert "Not a phone number." in bad.get_data(as_text=True)
    session.expire_all()
    assert session.get(StaffUser, nurse.id).phone is None  # nothing half-saved
    assert client.post(url, data={"email": "nurse@example.org", "phone": "+86 138 0000 0009"}).status_code == 302
    session.expire_all()
    user = session.get(StaffUser, nurse.id)
    assert (user.email, user.phone) == ("nurse@example.org", "+86 138 0000 0009")
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "staff_contact")).one()
    assert event.actor_id == str(admin.id) and event.new == {"email": "nurse@example.org", "phone": "+86 138 0000 0009"}
    page = client.get(f"/staff/admin/users/{nurse.id}").get_data(as_text=True)
    assert 'href="tel:+8613800000009"' in page
    created = client.post(
        "/staff/admin/users/new",
        data={
            "username": "new.nurse",
            "full_name": "New Nurse",
            "role": "nurse",
            "language": "zh_Hans",
            "site_id": 0,
            "phone": "13800000010",
            "password": "a long enough password",
        },
    )
    assert created.status_code == 302
    assert session.scalar(select(StaffUser.phone).where(StaffUser.username == "new.nurse")) == "13800000010"


def test_qol_users_sets_phone(app, session, factory):
    site = factory.site()
    session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["users", "create", "sms.nurse", "--role", "nurse", "--site", site.code, "--phone", "+8613800000011"]
        + ["--password", "cli password 1"]
    )
    assert result.exit_code == 0, result.output
    assert "\t+8613800000011" in runner.invoke(args=["users", "list"]).output
    assert runner.invoke(args=["users", "set-contact", "sms.nurse", "--phone", "not a number"]).exit_code != 0
    result = runner.invoke(args=["users", "set-contact", "sms.nurse", "--phone", "13800000012", "--email", "n@x.org"])
    assert result.exit_code == 0 and "updated" in result.output
    user = session.scalar(select(StaffUser).where(StaffUser.username == "sms.nurse"))
    assert (user.phone, user.email) == ("13800000012", "n@x.org")
    assert runner.invoke(args=["users", "set-contact", "sms.nurse", "--phone", ""]).exit_code == 0
    session.expire_all()
    assert session.get(StaffUser, user.id).phone is None and session.get(StaffUser, user.id).email == "n@x.org"


def test_red_alert_reaches_each_nurse_by_sms_and_email_in_her_language(app, session, factory, now):
    site = factory.site(code="RA1")
    zh = factory.staff("nurse", sites=[site], language="zh_Hans", email="zh@h.example", phone="13800000021")
    en = factory.staff("nurse", sites=[site], language="en", email="en@h.example", phone="13800000022")
    factory.staff("investigator", sites=[site], email="pi@h.example")  # alerts go to the nurses
    factory.staff("nurse", sites=[factory.site(code="RA2")], email="other@h.example")  # another site
    patient = factory.patient(site, study_id="RA1-001", pin=None).patient
    alert = add_alert(session, patient, level="red", at=now)
    assert alerts.notify_nurses(session, alert, patient, now) == 4
    session.commit()

    received = []

    def answer(request):
        received.append(json.loads(request.body))
        return Answer(200, {"id": f"relay-{len(received)}"})

    with http_server(answer) as server, smtp_server() as (smtp, inbox):
        app.config.update(
            SMS_BACKEND="webhook",
            SMS_WEBHOOK_URL=server.url,
            MAIL_BACKEND="smtp",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=smtp.port,
        )
        settings = notifications.ReminderSettings.from_config(app.config)
        counts = notifications.send_due(
            session, now, build_channels(app.config), settings, render=app_renderer(app), checkpoint=session.commit
        )
    assert counts == {"sent": 4}
    sms = {m["to"]: m for m in received}
    assert set(sms) == {"+8613800000021", "+8613800000022"}
    assert sms["+8613800000021"]["template"] == "alert" and sms["+8613800000021"]["params"] == {
        "patient": "RA1-001",
        "level": "红色",
    }
    assert "RA1-001" in sms["+8613800000021"]["text"] and "红色" in sms["+8613800000021"]["text"]
    assert sms["+8613800000022"]["params"]["level"] == "red" and "symptom alert" in sms["+8613800000022"]["text"]
    mails = {
        e.rcpt_tos[0]: email.message_from_bytes(e.original_content, policy=email.policy.default)
        for e in inbox.envelopes
    }
    assert set(mails) == {"zh@h.example", "en@h.example"}
    assert "RA1-001" in mails["zh@h.example"]["Subject"] and mails["zh@h.example"]["Content-Language"] == "zh-Hans"
    assert mails["en@h.example"]["Subject"] == "RED symptom alert: patient RA1-001"
    session.expire_all()
    rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "alert")).all()
    assert {r.status for r in rows} == {"sent"} and {r.staff_user_id for r in rows} == {zh.id, en.id}
    assert {r.provider_message_id for r in rows if r.channel == "sms"} == {"relay-1", "relay-2"}


def test_log_only_backends_record_logged_not_delivered(app, session, factory, now):
    site = factory.site()
    nurse = factory.staff("nurse", sites=[site], email="n@h.example", phone="13800000031")
    patient = factory.patient(site, pin=None).patient
    alerts.notify_nurses(session, add_alert(session, patient, at=now), patient, now)
    app.config.update(MAIL_BACKEND="outbox", SMS_BACKEND="outbox")
    counts = notifications.send_due(
        session, now, build_channels(app.config), notifications.ReminderSettings(), render=app_renderer(app)
    )
    assert counts == {"logged": 2}
    rows = session.scalars(select(OutboxMessage).where(OutboxMessage.staff_user_id == nurse.id)).all()
    assert {(r.status, r.last_error) for r in rows} == {("logged", "logged, not delivered (development backend)")}
