"""Helpers shared by the scheduler/timepoint DB tests."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from qol_app.models import AuditEvent, Timepoint
from qol_app.notify.channels import Outgoing


class RecordingChannel:
    """A channel that remembers what it delivered (thread-safe) instead of sending it."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self._lock = threading.Lock()

    def deliver(self, message: Outgoing) -> None:
        with self._lock:
            self.sent.append(message)


@pytest.fixture
def recorder() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
def channels(recorder):
    return {"email": recorder, "sms": recorder}


@pytest.fixture
def render(app):
    """The scheduler's message renderer (the app's templates and catalogs)."""
    from qol_app.notify.templates import app_renderer

    return app_renderer(app)


def audit_count(session) -> int:
    return session.scalar(select(func.count(AuditEvent.id)))


def timepoints_of(session, patient) -> dict[str, Timepoint]:
    session.expire_all()
    return {tp.key: tp for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id))}
