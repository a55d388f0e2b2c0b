"""Informed attacks on the audit trail: the attacker knows the format and has the database, not the key.

Each attack runs after a checkpoint was taken (``qol audit checkpoint``). Every one must be
detected when verifying with that checkpoint; without it, all but the two that leave a
self-consistent older state (everything deleted; an older copy restored) must be detected too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from sqlalchemy import select, text

from qol_app.models import AuditChainHead, AuditEvent
from qol_app.services import audit
from qol_app.services.audit import Actor
from tests.factories import tamper

ACTOR = Actor.system("tests")
T = dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC)


def _events(session):
    return session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()


def _head(session):
    return session.execute(select(AuditChainHead).execution_options(populate_existing=True)).scalar_one()


def _unkeyed(prev_hash: str, values: dict) -> str:
    """What an attacker without the key can compute: the same payload, plain SHA-256."""
    fields = {name: values[name] for name in audit.HASHED} | {"prev_hash": prev_hash}
    fields["occurred_at"] = str(fields["occurred_at"])
    return hashlib.sha256(json.dumps({"format": 2, "event": fields}, sort_keys=True).encode()).hexdigest()


def _insert_forged(session, event_id: int, prev_hash: str, action: str = "forged") -> str:
    values = {
        "id": event_id,
        "occurred_at": T,
        "actor_type": "staff",
        "actor_id": "1",
        "action": action,
        "entity_type": "patient",
        "entity_id": "1",
        "patient_id": 1,
        "site_id": 1,
        "old": None,
        "new": None,
        "reason": "forged",
        "request_id": None,
        "prev_hash": prev_hash,
        "note": None,
    }
    forged = _unkeyed(prev_hash, values)
    tamper(
        session,
        "INSERT INTO audit_events (id, occurred_at, actor_type, actor_id, action, entity_type, entity_id, "
        "patient_id, site_id, reason, prev_hash, hash) VALUES (:id, :at, 'staff', '1', :action, 'patient', '1', "
        "1, 1, 'forged', :prev, :hash)",
        id=event_id,
        at=T.replace(tzinfo=None) if session.get_bind().dialect.name == "sqlite" else T,
        action=action,
        prev=prev_hash,
        hash=forged,
    )
    return forged


def _set_head(session, count: int, last_hash: str, mac: str | None = "keep") -> None:
    if mac == "keep":
        tamper(session, "UPDATE audit_chain_head SET count = :c, last_hash = :h", c=count, h=last_hash)
    else:
        tamper(session, "UPDATE audit_chain_head SET count = :c, last_hash = :h, mac = :m", c=count, h=last_hash, m=mac)


# ---- the attacks ------------------------------------------------------------------------------
def edit_note(session, saved):
    tamper(session, "UPDATE audit_events SET note = 'approved by the monitor' WHERE id = 2")


def edit_reason_and_rehash_without_key(session, saved):
    first = _events(session)[1]
    values = {name: getattr(first, name) for name in audit.HASHED} | {"reason": "edited"}
    tamper(
        session,
        "UPDATE audit_events SET reason = 'edited', hash = :h WHERE id = 2",
        h=_unkeyed(first.prev_hash, values),
    )


def append_forged_event(session, saved):
    head = _head(session)
    forged = _insert_forged(session, head.count + 1, head.last_hash)
    _set_head(session, head.count + 1, forged)


def append_forged_event_keeping_the_head(session, saved):
    head = _head(session)
    _insert_forged(session, head.count + 1, head.last_hash)


def delete_everything(session, saved):
    tamper(session, "DELETE FROM audit_events")
    tamper(session, "DELETE FROM audit_chain_head")


def delete_the_tail_and_fix_the_head(session, saved):
    events = _events(session)
    keep = events[-3]
    tamper(session, "DELETE FROM audit_events WHERE id > :id", id=keep.id)
    _set_head(session, keep.id, keep.hash)


def restore_an_older_copy(session, saved):
    """The database rolled back to a state seen earlier: old head row (its MAC included) and rows."""
    count, last_hash, mac = saved["early_head"]
    tamper(session, "DELETE FROM audit_events WHERE id > :c", c=count)
    _set_head(session, count, last_hash, mac)


def delete_a_middle_event_and_renumber(session, saved):
    gone = _events(session)[2]
    gone_id, gone_prev = gone.id, gone.prev_hash
    tamper(session, "DELETE FROM audit_events WHERE id = :id", id=gone_id)
    tamper(session, "UPDATE audit_events SET id = id - 1000000 WHERE id > :id", id=gone_id)
    tamper(session, "UPDATE audit_events SET id = id + 1000000 - 1 WHERE id < 0")
    tamper(session, "UPDATE audit_events SET prev_hash = :p WHERE id = :id", p=gone_prev, id=gone_id)
    head = _head(session)
    _set_head(session, head.count - 1, head.last_hash)


def swap_two_events(session, saved):
    a, b = _events(session)[1:3]
    tamper(session, "UPDATE audit_events SET action = :x WHERE id = :id", x=b.action + "#", id=a.id)
    tamper(session, "UPDATE audit_events SET action = :x WHERE id = :id", x=a.action, id=b.id)


def replace_the_whole_chain(session, saved):
    tamper(session, "DELETE FROM audit_events")
    prev = audit.GENESIS
    for n in range(1, 4):
        prev = _insert_forged(session, n, prev, action=f"forged{n}")
    _set_head(session, 3, prev)


def move_an_event_in_time(session, saved):
    if session.get_bind().dialect.name == "postgresql":
        tamper(session, "UPDATE audit_events SET occurred_at = occurred_at - interval '1 day' WHERE id = 3")
    else:
        tamper(session, "UPDATE audit_events SET occurred_at = datetime(occurred_at, '-1 day') WHERE id = 3")


ATTACKS = [
    edit_note,
    edit_reason_and_rehash_without_key,
    append_forged_event,
    append_forged_event_keeping_the_head,
    delete_everything,
    delete_the_tail_and_fix_the_head,
    restore_an_older_copy,
    delete_a_middle_event_and_renumber,
    swap_two_events,
    replace_the_whole_chain,
    move_an_event_in_time,
]
#: Self-consistent older states: only a checkpoint kept outside the database can tell.
NEEDS_CHECKPOINT = {delete_everything, restore_an_older_copy}


@pytest.fixture
def trail(session):
    """Six events, the head as it stood after the third (an attacker's old copy), a checkpoint at the end."""
    saved = {}
    for n in range(6):
        audit.record(session, ACTOR, "step", entity_type="test", entity_id=n, new={"n": n}, now=T)
        if n == 2:
            head = _head(session)
            saved["early_head"] = (head.count, head.last_hash, head.mac)
    made, problems = audit.checkpoint(session, T + dt.timedelta(hours=1))
    assert problems == [] and made is not None and made.count == 6
    saved["checkpoint"] = made
    return saved


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_each_informed_attack_is_detected_with_the_checkpoint(session, trail, attack):
    attack(session, trail)
    with_checkpoint = audit.verify(session, checkpoints=[trail["checkpoint"]])
    assert with_checkpoint, f"{attack.__name__} went unnoticed even with the checkpoint"
    without = audit.verify(session)
    if attack in NEEDS_CHECKPOINT:
        assert without == [], "this attack leaves a consistent older state: only the checkpoint sees it"
    else:
        assert without, f"{attack.__name__} went unnoticed without a checkpoint"


def test_a_checkpoint_file_is_signed(session, trail):
    cp = trail["checkpoint"]
    assert audit.read_checkpoint(session, cp.to_json()) == cp
    lowered = json.loads(cp.to_json()) | {"count": 2}
    with pytest.raises(ValueError, match="signature"):
        audit.read_checkpoint(session, json.dumps(lowered))
    with pytest.raises(ValueError, match="not an audit checkpoint"):
        audit.read_checkpoint(session, "{}")
    with pytest.raises(ValueError, match="not an audit checkpoint"):
        audit.read_checkpoint(session, "not json")


def test_no_checkpoint_of_a_damaged_trail(session, trail):
    edit_note(session, trail)
    made, problems = audit.checkpoint(session, T)
    assert made is None and problems


def test_checkpoint_and_verify_commands(app, session, factory, tmp_path):
    factory.patient()
    factory.patient()
    session.commit()
    runner = app.test_cli_runner()
    out = tmp_path / "checkpoint.json"
    made = runner.invoke(args=["audit", "checkpoint", "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert "2 events" in made.output and json.loads(out.read_text())["count"] == 2
    printed = runner.invoke(args=["audit", "checkpoint"])
    assert printed.exit_code == 0 and json.loads(printed.output)["count"] == 2
    ok = runner.invoke(args=["audit", "verify", "--checkpoint", str(out)])
    assert ok.exit_code == 0 and "intact" in ok.output, ok.output

    delete_everything(session, {})
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0  # an empty trail is consistent...
    cut = runner.invoke(args=["audit", "verify", "--checkpoint", str(out)])
    assert cut.exit_code == 1 and "covers 2 events, but only 0 are stored" in cut.output  # ...but not complete

    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(json.loads(out.read_text()) | {"count": 0}))
    bad = runner.invoke(args=["audit", "verify", "--checkpoint", str(forged)])
    assert bad.exit_code == 1 and "signature does not match" in bad.output


def test_a_checkpoint_of_an_empty_trail(session):
    made, problems = audit.checkpoint(session, T)
    assert problems == [] and made.count == 0
    assert audit.verify(session, checkpoints=[made]) == []


def test_verify_reads_every_event_once_in_order(session, trail):
    """Keyset pages: a batch boundary inside the chain changes nothing."""
    assert audit.verify(session, batch=4, checkpoints=[trail["checkpoint"]]) == []
    tamper(session, "DELETE FROM audit_events WHERE id = 5")
    messages = [p.message for p in audit.verify(session, batch=4)]
    assert any("event 5 missing" in m for m in messages)


def test_the_head_mac_is_checked(session, trail):
    tamper(session, "UPDATE audit_chain_head SET mac = :m", m="0" * 64)
    assert any("chain head was changed" in p.message for p in audit.verify(session))
    count = session.scalar(text("SELECT count(*) FROM audit_events"))
    assert count == 6
