"""Crash durability: gunicorn on loopback, kill -9 while patients save pages and submit.

A few trials per database: clients answer BN20 page by page (each page one transaction) and
send it; at a random moment the server's master and workers are killed with SIGKILL. Then, from
the database alone: every save the server acknowledged (its redirect arrived) is there with the
values sent, no page is half-saved, every acknowledged submission is submitted, and the audit
trail verifies.
"""

from __future__ import annotations

import http.client
import os
import random
import threading
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from qol_app.db import db, utcnow
from qol_app.models import Answer, Response
from qol_app.services import audit, responses
from tests.conftest import AUDIT_KEY
from tests.factories import Factory
from tests.live import Client, serve

BN20 = "eortc_qlq_bn20"
TRIALS = int(os.environ.get("QOL_CRASH_TRIALS", "2"))  # per database; more on demand
CLIENTS = 4
FORMS_PER_CLIENT = 3


def _seed(n: int):
    factory = Factory(db.session, utcnow())  # the server runs on the real clock
    site = factory.site()
    forms = []
    for _ in range(n):
        enrolled = factory.patient(site, pin=None, language="en")
        tp = factory.timepoint(enrolled, instruments=[BN20], respondent="self")
        forms.append((enrolled.token, tp.id))
    db.session.commit()
    instrument = responses.registry().get(BN20)
    pages = [page.items for page in instrument.pages]
    return forms, pages


class Ledger:
    """What the server acknowledged, by (timepoint, item) -> value, and submitted timepoints."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.saved: dict[tuple[int, str], float] = {}
        self.submitted: set[int] = set()
        self.acks = 0


def _patient(port: int, token: str, tp_id: int, pages, ledger: Ledger, rng: random.Random) -> None:
    client = Client(port, timeout=20)
    link = f"/p/l/{token}"
    assert client.post(link, {"csrf_token": client.get(link).csrf()}).status == 302
    for number, items in enumerate(pages, start=1):
        url = f"/p/t/{tp_id}/{BN20}/{number}"
        form = client.get(url).hidden()
        answers = {item: str(rng.randint(1, 4)) for item in items}
        reply = client.post(url, form | answers | {"nav": "next"})
        assert reply.status == 302, reply.body[:300]
        with ledger.lock:
            ledger.saved.update({(tp_id, item): float(value) for item, value in answers.items()})
            ledger.acks += 1
    review = f"/p/t/{tp_id}/submit"
    reply = client.post(review, client.get(review).hidden())
    assert reply.status == 302, reply.body[:300]
    with ledger.lock:
        ledger.submitted.add(tp_id)
        ledger.acks += 1


def _client(server, mine, pages, ledger: Ledger, errors: list, seed: float) -> None:
    local = random.Random(seed)
    try:
        for token, tp_id in mine:
            _patient(server.port, token, tp_id, pages, ledger, local)
    except (OSError, http.client.HTTPException):
        return  # the server was killed under this client
    except AssertionError as exc:  # a 4xx/5xx before the kill is a real failure
        if server.process.poll() is None:
            errors.append(exc)


@pytest.mark.slow
def test_acknowledged_saves_survive_kill_9(committing_app, database_url, tmp_path):
    engine = committing_app.extensions["qol_db"]["engine"]
    rng = random.Random(18)
    for trial in range(TRIALS):
        forms, pages = _seed(CLIENTS * FORMS_PER_CLIENT)
        ledger, errors = Ledger(), []
        with serve(database_url, tmp_path, workers=2, threads=4) as server:
            threads = [
                threading.Thread(
                    target=_client, args=(server, forms[i::CLIENTS], pages, ledger, errors, rng.random()), daemon=True
                )
                for i in range(CLIENTS)
            ]
            for thread in threads:
                thread.start()
            target = rng.randint(6, 4 * CLIENTS)  # kill somewhere in the middle of the work
            deadline = time.monotonic() + 60
            while ledger.acks < target and time.monotonic() < deadline and any(t.is_alive() for t in threads):
                time.sleep(0.005)
            time.sleep(rng.random() * 0.2)
            server.kill()
            for thread in threads:
                thread.join(30)
        assert not errors, errors
        assert ledger.acks >= target, f"trial {trial}: only {ledger.acks} acknowledgements before the deadline"

        with Session(engine, info=audit.session_info(AUDIT_KEY)) as session:
            tp_ids = [tp_id for _token, tp_id in forms]
            stored = {
                (tp_id, item): (value, skipped)
                for tp_id, item, value, skipped in session.execute(
                    select(Response.timepoint_id, Answer.item_id, Answer.value, Answer.skipped)
                    .join(Answer, Answer.response_id == Response.id)
                    .where(Response.timepoint_id.in_(tp_ids))
                )
            }
            missing = {key: value for key, value in ledger.saved.items() if stored.get(key, (None,))[0] != value}
            assert not missing, f"trial {trial}: acknowledged answers lost or changed: {missing}"
            for tp_id in tp_ids:
                for items in pages:
                    present = [(tp_id, item) in stored for item in items]
                    assert all(present) or not any(present), f"trial {trial}: timepoint {tp_id} has a half-saved page"
            statuses = dict(
                session.execute(
                    select(Response.timepoint_id, Response.status).where(Response.timepoint_id.in_(tp_ids))
                ).all()
            )
            assert all(statuses.get(tp_id) == "submitted" for tp_id in ledger.submitted)
            assert audit.verify(session) == [], f"trial {trial}: the audit trail does not verify after kill -9"
        print(f"trial {trial}: {ledger.acks} acknowledged, {len(ledger.submitted)} submitted, then kill -9")
