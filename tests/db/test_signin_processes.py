"""Staff sign-in throttling holds across worker processes: the count lives in the database.

Two real processes (each its own app, engine and connection pool, like two gunicorn workers)
post wrong passwords for one account at the same time; together they reach the limit, and then
neither lets the right password in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import select

from qol_app.models import AuditEvent, SignInThrottle, StaffUser
from qol_app.passwords import hash_secret
from tests.factories import STAFF_PASSWORD

WORKER = textwrap.dedent(
    """
    import sys
    from qol_app import create_app

    url, username, password, tries = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    app = create_app({"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "t", "WTF_CSRF_ENABLED": False})
    client = app.test_client()
    codes = [
        client.post("/staff/login", data={"username": username, "password": password}).status_code
        for _ in range(tries)
    ]
    print(" ".join(map(str, codes)))
    """
)


def _run(url: str, username: str, password: str, tries: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, username, password, str(tries)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow  # three fresh Python processes per backend
def test_failures_from_two_processes_add_up_to_one_lock(committing_app, database_url):
    from qol_app.db import db

    user = StaffUser(username="two.proc", full_name="Two", role="nurse", password_hash=hash_secret(STAFF_PASSWORD))
    db.session.add(user)
    db.session.commit()
    workers = [_run(database_url, "two.proc", "wrong password here", 3) for _ in range(2)]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-2000:]
        outputs.append([int(code) for code in out.split()])
    codes = sorted(code for codes in outputs for code in codes)
    # Six tries of one account across two processes: the fifth failure locks it. (A try racing the
    # fifth past the lock check still counts, one at a time: the counter is one UPDATE per failure.)
    assert codes.count(429) >= 1 and codes.count(200) <= 5, outputs
    right = _run(database_url, "two.proc", STAFF_PASSWORD, 1)
    out, err = right.communicate(timeout=120)
    assert right.returncode == 0, err[-2000:]
    assert out.split() == ["429"]  # locked for every worker, the right password included
    db.session.expire_all()
    row = db.session.scalar(select(SignInThrottle).where(SignInThrottle.scope == "account"))
    assert row.key == "two.proc" and row.locked_until is not None
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == str(user.id))).all()
    assert actions.count("staff_sign_in_locked") == 1 and actions.count("staff_sign_in_failed") in (5, 6)
