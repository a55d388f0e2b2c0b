"""Real e-mail delivery: a reminder leaves through smtplib and arrives at a local SMTP server."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from qol_app.models import OutboxMessage
from qol_app.scheduler.jobs import run_sweep
from qol_app.services import treatment_events
from qol_app.services.audit import Actor
from qol_app.services.timepoints import reconcile_patient


class Inbox:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.mark.parametrize(
    ("language", "subject", "phrase"),
    [
        ("zh_Hans", "CONQUER研究：您的问卷已可填写", "请在2026年3月27日前完成"),
        ("en", "CONQUER study: your questionnaire is ready", "Please fill it in by March 27, 2026"),
    ],
)
def test_reminder_is_delivered_over_smtp_in_the_patients_language(
    app, factory, session, smtp_server, language, subject, phrase
):
    controller, inbox = smtp_server
    app.config.update(
        MAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=controller.port,
        MAIL_SENDER="conquer@hospital.example",
        REMINDER_CHANNELS=["email", "sms"],
    )
    patient = factory.patient(
        arm="B", language=language, randomization_date=dt.date(2026, 3, 2), email="patient@example.org"
    ).patient
    treatment_events.record_event(
        session,
        Actor("staff", None),
        patient,
        kind="systemic_cycle",
        date=dt.date(2026, 3, 4),  # cycle day 21 = 24 March: window 21-27 March
        now=dt.datetime(2026, 3, 20, 4, 0, tzinfo=dt.UTC),
    )
    session.commit()

    report = run_sweep(app, dt.datetime(2026, 3, 21, 4, 0, tzinfo=dt.UTC))  # sys-c1 window opened today
    assert report.ok, report.errors
    assert report.steps["outbox"]["sent"] == 1

    (envelope,) = inbox.envelopes
    assert envelope.rcpt_tos == ["patient@example.org"]
    assert envelope.mail_from == "conquer@hospital.example"
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert message["Subject"] == subject
    assert message["Content-Language"] == language.replace("_", "-")
    body = message.get_content()
    assert phrase in body
    assert "http://localhost/p/r/" in body  # the reminder's own link, never the personal token
    assert "120" in body  # the site's emergency number


def test_smtp_outage_is_recorded_and_retried(app, factory, session):
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=_free_port(), REMINDER_CHANNELS=["email"])
    patient = factory.patient(arm="B", randomization_date=dt.date(2026, 3, 10), email="p@example.org").patient
    reconcile_patient(session, Actor.system("tests"), patient, dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC))
    session.commit()
    report = run_sweep(app, dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC))
    assert report.steps["outbox"] == {"retry": 1}  # the reminder; the nurses' call task is never "sent"
    session.expire_all()
    assert session.scalars(select(OutboxMessage.status).where(OutboxMessage.kind == "call_task")).all() == ["open"]
    message = session.scalars(select(OutboxMessage).where(OutboxMessage.channel == "email")).one()
    assert message.status == "queued" and message.attempts == 1 and message.last_error.startswith("DeliveryError: SMTP")
