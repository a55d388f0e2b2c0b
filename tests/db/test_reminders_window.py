"""Reminders follow the window, not the row: moved, cancelled and reactivated timepoints.

A cycle recorded on its planned date gets r1, r2 and a call task in its window; when the nurse
corrects the date two weeks later, the timepoint keeps its row but gets new reminders and a new
call task in its new window, the old window's leftovers are retired (audited), and nothing is
sent twice. The same holds for a timepoint that comes back, and for a window moved by code that
knows nothing about reminders.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select, update

from qol_app.models import AuditEvent, OutboxMessage, Patient, Timepoint
from qol_app.scheduler.jobs import run_sweep
from qol_app.services import reminder_links, treatment_events, worklist
from qol_app.services.notifications import window_key
from tests.db.conftest import timepoints_of

D = dt.timedelta(days=1)
H = dt.timedelta(hours=1)
NURSE = treatment_events.Actor("staff", None)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def patient(factory, session):
    p = factory.patient(arm="B", randomization_date=dt.date(2026, 3, 2), phone="13800000002", pin=None).patient
    session.commit()
    return p


def record_cycle(session, patient, day: dt.date, at: dt.datetime):
    event, _ = treatment_events.record_event(session, NURSE, patient, kind="systemic_cycle", date=day, now=at)
    session.commit()
    return event


def c1(session, patient) -> Timepoint:
    return timepoints_of(session, patient)["sys-c1"]


def sent_for(recorder, tp_id: int) -> list[tuple[str, str]]:
    """(window, step) of every message delivered for the timepoint, in order."""
    out = []
    for message in recorder.sent:
        parts = message.dedupe_key.split(":")
        if parts[0] == "tp" and int(parts[1]) == tp_id:
            out.append((parts[2], parts[3]))
    return out


def messages_of(session, tp_id: int, kind: str) -> list[OutboxMessage]:
    session.expire_all()
    return session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.timepoint_id == tp_id, OutboxMessage.kind == kind)
        .order_by(OutboxMessage.id)
    ).all()


def sweep(app, at, channels):
    report = run_sweep(app, at, channels=channels)
    assert report.ok, report.errors
    return report


def link_in(message) -> str:
    return re.search(r"/p/r/([A-Za-z0-9_-]+)", message.body).group(1)


def test_corrected_cycle_date_gets_new_reminders_and_call_task(app, session, patient, channels, recorder):
    record_cycle(session, patient, dt.date(2026, 3, 3), utc(2026, 3, 20, 4, 0))
    tp = c1(session, patient)
    old = window_key(tp.opens_at, tp.closes_at)
    old_opens, old_closes = tp.opens_at, tp.closes_at
    sweep(app, old_opens + 8 * H, channels)  # 08:00 local on the first day: r1
    sweep(app, old_opens + 2 * D + 8 * H, channels)  # two days later: r2
    sweep(app, old_closes - D + H, channels)  # the day before close: the nurses' call task
    assert sent_for(recorder, tp.id) == [(old, "r1"), (old, "r2")]
    (old_task,) = messages_of(session, tp.id, "call_task")
    assert old_task.status == "open" and old_task.window_key == old
    old_link = link_in(recorder.sent[-1])
    assert reminder_links.find(session, old_link, old_closes - D + H).ok

    # The nurse finds the cycle was really given two weeks later (delayed for low counts).
    at = old_closes - D + 2 * H
    event = patient.events[0]
    treatment_events.move_event(session, NURSE, event, date=dt.date(2026, 3, 17), reason="delayed: neutropenia", now=at)
    session.commit()
    tp = c1(session, patient)
    new = window_key(tp.opens_at, tp.closes_at)
    assert new != old and tp.id == old_task.timepoint_id  # same row, new window
    sweep(app, at, channels)

    # The old window's task is retired (audited) and leaves the work list; its link stops working.
    (retired,) = messages_of(session, tp.id, "call_task")
    assert (retired.status, retired.last_error) == ("skipped", "superseded: the window moved")
    assert retired.dedupe_key.endswith(f"~void{retired.id}")
    audit = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "message_retired", AuditEvent.entity_id == str(retired.id))
    ).one()
    assert audit.reason == "superseded: the window moved" and audit.actor_id == "scheduler"
    scope = Patient.id == patient.id
    assert [it for it in worklist.build(session, scope, at).items if it.category == "call"] == []
    assert reminder_links.find(session, old_link, at).refused == "moved"

    # The new window gets its own r1, r2 and call task.
    sweep(app, tp.opens_at + 8 * H, channels)
    sweep(app, tp.opens_at + 2 * D + 8 * H, channels)
    sweep(app, tp.closes_at - D + H, channels)
    sweep(app, tp.closes_at - D + 2 * H, channels)  # an extra sweep adds nothing
    assert sent_for(recorder, tp.id) == [(old, "r1"), (old, "r2"), (new, "r1"), (new, "r2")]
    tasks = messages_of(session, tp.id, "call_task")
    assert [(t.window_key, t.status) for t in tasks] == [(old, "skipped"), (new, "open")]
    calls = [it for it in worklist.build(session, scope, tp.closes_at - D + 2 * H).items if it.category == "call"]
    assert [it.task.id for it in calls] == [tasks[1].id]
    assert len({m.dedupe_key for m in recorder.sent}) == len(recorder.sent)
    queued_audits = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "message_queued", AuditEvent.patient_id == patient.id)
    ).all()
    keys = {(a.new["window_key"], a.new["step"]) for a in queued_audits if a.new.get("timepoint_id") == tp.id}
    assert keys == {(old, "r1"), (old, "r2"), (old, "call"), (new, "r1"), (new, "r2"), (new, "call")}


def test_deleted_then_re_entered_cycle_is_planned_afresh(app, session, patient, channels, recorder):
    record_cycle(session, patient, dt.date(2026, 3, 3), utc(2026, 3, 20, 4, 0))
    tp = c1(session, patient)
    old = window_key(tp.opens_at, tp.closes_at)
    sweep(app, tp.opens_at + 8 * H, channels)
    night = tp.opens_at + 2 * D + 2 * H  # 02:00 local: r2 is queued, waiting for the morning
    sweep(app, night, channels)
    assert [m.status for m in messages_of(session, tp.id, "reminder")] == ["sent", "queued"]

    treatment_events.delete_event(session, NURSE, patient.events[0], reason="entered in error", now=night + H)
    session.commit()
    assert c1(session, patient).status == "cancelled"
    sweep(app, night + 6 * H, channels)  # morning: the queued r2 is retired, not sent
    r1, r2 = messages_of(session, tp.id, "reminder")
    assert (r2.status, r2.last_error) == ("skipped", "timepoint cancelled")

    record_cycle(session, patient, dt.date(2026, 3, 10), night + 7 * H)  # re-entered with its real date
    tp = c1(session, patient)
    new = window_key(tp.opens_at, tp.closes_at)
    assert tp.status in ("scheduled", "open") and new != old and tp.id == r1.timepoint_id
    for when in (tp.opens_at + 8 * H, tp.opens_at + 2 * D + 8 * H, tp.closes_at - D + H):
        sweep(app, when, channels)
    assert sent_for(recorder, tp.id) == [(old, "r1"), (new, "r1"), (new, "r2")]
    assert [(t.window_key, t.status) for t in messages_of(session, tp.id, "call_task")] == [(new, "open")]


def test_retracted_death_brings_the_call_task_back_without_repeating_reminders(
    app, session, patient, channels, recorder
):
    record_cycle(session, patient, dt.date(2026, 3, 3), utc(2026, 3, 20, 4, 0))
    tp = c1(session, patient)
    window = window_key(tp.opens_at, tp.closes_at)
    for when in (tp.opens_at + 8 * H, tp.opens_at + 2 * D + 8 * H, tp.closes_at - D + H):
        sweep(app, when, channels)
    assert sent_for(recorder, tp.id) == [(window, "r1"), (window, "r2")]
    at = tp.closes_at - D + 2 * H
    treatment_events.set_patient_status(
        session, NURSE, patient, "died", status_date=tp.target_date - D, reason="hospital report", now=at
    )
    session.commit()
    assert c1(session, patient).status == "not_expected"
    (task,) = messages_of(session, tp.id, "call_task")
    assert task.status == "skipped" and task.last_error == "patient died"

    # A recorded death is not overwritten by another status: its retraction is a correction.
    treatment_events.correct_death(
        session, NURSE, patient, status="active", reason="wrong patient's record", now=at + H
    )
    session.commit()
    assert c1(session, patient).status == "open"
    sweep(app, at + 2 * H, channels)
    tasks = messages_of(session, tp.id, "call_task")
    assert [(t.window_key, t.status) for t in tasks] == [(window, "skipped"), (window, "open")]
    assert sent_for(recorder, tp.id) == [(window, "r1"), (window, "r2")]  # not sent again for the same window


def test_a_window_moved_by_any_code_path_is_replanned(app, session, patient, channels, recorder):
    """Code that rewrites the window columns directly (say, a schedule amendment) never calls the
    notifications service; the next sweep still retires and replans."""
    record_cycle(session, patient, dt.date(2026, 3, 3), utc(2026, 3, 20, 4, 0))
    tp = c1(session, patient)
    sweep(app, tp.opens_at + H, channels)  # 01:00 local: r1 waits for the morning
    (r1,) = messages_of(session, tp.id, "reminder")
    assert r1.status == "queued"
    shift = 14 * D
    old_opens = tp.opens_at
    session.execute(
        update(Timepoint)
        .where(Timepoint.id == tp.id)
        .values(
            **{
                name: getattr(tp, name) + shift
                for name in (
                    "opens_at",
                    "closes_at",
                    "grace_closes_at",
                    "window_start",
                    "window_end",
                    "grace_end",
                    "target_date",
                )
            },
            status="scheduled",
        )
    )
    session.commit()
    sweep(app, old_opens + 8 * H, channels)  # the morning r1 was waiting for
    (r1,) = messages_of(session, tp.id, "reminder")
    assert (r1.status, r1.last_error) == ("skipped", "superseded: the window moved")
    assert recorder.sent == []
    tp = c1(session, patient)
    sweep(app, tp.opens_at + 8 * H, channels)
    assert sent_for(recorder, tp.id) == [(window_key(tp.opens_at, tp.closes_at), "r1")]
