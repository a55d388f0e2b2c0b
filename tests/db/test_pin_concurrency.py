"""Concurrent PIN guessing across two server processes stays within the limit.

A burst of wrong PINs from many connections at once, against gunicorn with two worker processes
(four threads each): at most ``PIN_MAX_FAILURES`` PINs are checked, the patient is locked once,
and then even the right PIN is refused. Before the attempt was counted ahead of the check, the
same burst got 6 to 20 PINs checked against a limit of 5.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from qol_app.db import db
from qol_app.models import AuditEvent, Patient
from tests.conftest import FIXED_NOW
from tests.factories import Factory
from tests.live import Client, serve

BURST = 24
LIMIT = 5


@pytest.mark.slow
def test_a_burst_of_wrong_pins_checks_at_most_the_limit(committing_app, database_url, tmp_path):
    factory = Factory(db.session, FIXED_NOW)
    enrolled = factory.patient(pin="246810", language="en")
    db.session.commit()
    link = f"/p/l/{enrolled.token}"
    with serve(database_url, tmp_path, workers=2, threads=4, env={"QOL_PIN_MAX_FAILURES": str(LIMIT)}) as server:
        clients = [Client(server.port) for _ in range(BURST)]
        tokens = [client.get(link).csrf() for client in clients]
        start = threading.Barrier(BURST)
        statuses: list[int] = []

        def guess(client: Client, token: str, n: int) -> None:
            start.wait()
            statuses.append(client.post(link, {"csrf_token": token, "pin": f"{n:06d}"}).status)

        threads = [threading.Thread(target=guess, args=(c, t, n)) for n, (c, t) in enumerate(zip(clients, tokens))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(statuses) == BURST and set(statuses) <= {200, 429}, statuses
        checked_wrong = statuses.count(200)  # "that PIN is not right, N more tries"
        assert checked_wrong <= LIMIT - 1, f"{checked_wrong} wrong PINs were answered as checked (limit {LIMIT})"

        right = Client(server.port)
        refused = right.post(link, {"csrf_token": right.get(link).csrf(), "pin": "246810"})
        assert refused.status == 429, "the right PIN inside the lock-out window must be refused"

    db.session.expire_all()
    failed = db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "pin_failed"))
    locked = db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "pin_locked"))
    signed_in = db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "sign_in"))
    assert failed <= LIMIT - 1 and locked == 1 and signed_in == 0
    patient = db.session.get(Patient, enrolled.patient.id)
    assert patient.pin_locked_until is not None
