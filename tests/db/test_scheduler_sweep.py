"""The sweep on the database: statuses at the boundaries, downtime, reminders, heartbeat."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert, select, update

from qol_app.models import AuditEvent, OutboxMessage, Patient, Response, Timepoint
from qol_app.notify.channels import DeliveryError
from qol_app.scheduler.jobs import run_sweep
from qol_app.scheduling import derive_status
from qol_app.services import heartbeat, notifications, timepoints, treatment_events
from qol_app.services.audit import Actor
from tests.db.conftest import audit_count, timepoints_of

D = dt.timedelta(days=1)
US = dt.timedelta(microseconds=1)
NURSE = Actor("staff", None)
SETTINGS = notifications.ReminderSettings()


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def patient(factory, session):
    """Arm A, Shanghai: cycle 1 on 4 March (cycle day 21 = 24 March: sys-c1 window 21-27 March
    local) and an intrathecal dose on 17 March (one diary per day 18-24 March)."""
    p = factory.patient(arm="A", randomization_date=dt.date(2026, 3, 2), phone="13800000002").patient
    at = utc(2026, 3, 20, 4, 0)
    treatment_events.record_event(session, NURSE, p, kind="systemic_cycle", date=dt.date(2026, 3, 4), now=at)
    treatment_events.record_event(session, NURSE, p, kind="intrathecal_dose", date=dt.date(2026, 3, 17), now=at)
    return p


def _messages(session, **filters):
    session.expire_all()
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    for name, value in filters.items():
        query = query.where(getattr(OutboxMessage, name) == value)
    return session.scalars(query).all()


def _assert_all_derived(session, now):
    session.expire_all()
    for tp in session.scalars(select(Timepoint).where(Timepoint.status != "cancelled")):
        expected = derive_status(
            tp,
            now,
            submitted=tp.completed_at is not None,
            started=tp.started_at is not None,
            not_expected_reason=tp.not_expected_reason,
        )
        assert tp.status == expected, (tp.key, tp.status, expected)


def test_status_boundaries_with_a_frozen_clock(session, patient):
    c1 = timepoints_of(session, patient)["sys-c1"]
    steps = [
        (c1.opens_at - US, "scheduled"),
        (c1.opens_at, "open"),
        (c1.closes_at - US, "open"),
        (c1.closes_at, "overdue"),
        (c1.grace_closes_at - US, "overdue"),
        (c1.grace_closes_at, "missed"),
    ]
    for now, expected in steps:
        timepoints.sweep_statuses(session, now)
        assert timepoints_of(session, patient)["sys-c1"].status == expected, now
    assert c1.opens_at == utc(2026, 3, 20, 16, 0)  # 21 March 00:00 in Shanghai


def test_started_form_ends_partial_and_submitted_one_completed(session, patient):
    tps = timepoints_of(session, patient)
    assert (tps["diary-2026-03-19"].status, tps["diary-2026-03-20"].status) == ("overdue", "open")
    tps["diary-2026-03-19"].started_at = utc(2026, 3, 20, 2, 0)  # late, in grace, never submitted
    tps["diary-2026-03-20"].completed_at = utc(2026, 3, 20, 2, 0)
    session.flush()
    counts = timepoints.sweep_statuses(session, utc(2026, 3, 25, 0, 0))
    tps = timepoints_of(session, patient)
    assert tps["diary-2026-03-19"].status == "partial"
    assert tps["diary-2026-03-20"].status == "completed"
    assert counts["partial"] == 1 and counts["completed"] == 1


def test_a_form_with_a_response_row_ends_partial_even_where_no_start_time_was_stored(session, patient):
    """The sweep reads "begun" from the form's start time or from a response row of its own, so a
    form the patient opened ends partial, never missed, also in data where the start time was not
    kept (a restored or older database); a form with no response of its own still ends missed."""
    tps = timepoints_of(session, patient)
    begun, untouched = tps["diary-2026-03-19"], tps["diary-2026-03-20"]
    session.add(
        Response(
            timepoint_id=begun.id,
            patient_id=begun.patient_id,
            instrument_id="symptom_diary",
            instrument_version="1",
            language="zh_Hans",
            wording_version="own",
            respondent="self",
            started_at=utc(2026, 3, 20, 2, 0),
        )
    )
    session.flush()
    assert begun.started_at is None
    timepoints.sweep_statuses(session, utc(2026, 3, 25, 0, 0))
    tps = timepoints_of(session, patient)
    assert (tps["diary-2026-03-19"].status, tps["diary-2026-03-20"].status) == ("partial", "missed")
    assert untouched.started_at is None


def test_sweep_writes_only_real_changes(session, patient):
    now = utc(2026, 3, 22, 4, 0)
    first = timepoints.sweep_statuses(session, now)
    assert sum(first.values()) > 0
    audits = audit_count(session)
    assert timepoints.sweep_statuses(session, now) == {}
    assert audit_count(session) == audits
    status_audits = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "status").order_by(AuditEvent.id)
    ).all()
    assert len(status_audits) == sum(first.values())
    assert all(a.actor_type == "system" and a.actor_id == "scheduler" for a in status_audits)


def test_three_days_of_downtime_then_one_sweep(app, session, patient, channels, recorder):
    t0 = utc(2026, 3, 20, 4, 0)  # 12:00 in Shanghai
    run_sweep(app, t0, channels=channels)
    assert [m.dedupe_key.split(":")[3] for m in recorder.sent] == ["r1"]  # today's diary (20 March)
    before = {m.dedupe_key for m in _messages(session)}

    t3 = t0 + 3 * D  # nothing ran in between
    report = run_sweep(app, t3, channels=channels)
    assert report.ok, report.errors
    _assert_all_derived(session, t3)
    tps = timepoints_of(session, patient)
    assert tps["diary-2026-03-21"].status == "missed" and tps["diary-2026-03-22"].status == "overdue"
    assert tps["sys-c1"].status == "open" and tps["diary-2026-03-23"].status == "open"

    new = [m for m in _messages(session) if m.dedupe_key not in before]
    by_tp: dict[int, list[str]] = {}
    for message in new:
        by_tp.setdefault(message.timepoint_id, []).append(message.dedupe_key)
    assert all(len(keys) == 1 for keys in by_tp.values()), by_tp  # one catch-up per timepoint
    assert set(by_tp) == {tps["sys-c1"].id, tps["diary-2026-03-23"].id}
    c1 = tps["sys-c1"]
    window = notifications.window_key(c1.opens_at, c1.closes_at)
    assert by_tp[c1.id] == [notifications.reminder_key(c1.id, window, 2, "sms")]  # the newest only, not r1 + r2
    closed = {tp.id for tp in tps.values() if tp.closes_at <= t3}
    assert not [m for m in _messages(session) if m.timepoint_id in closed and m.created_at == t3]
    assert all(m.status == "sent" for m in new)
    assert len(recorder.sent) == 3


def test_reminder_in_quiet_hours_waits_for_local_morning(app, session, patient, channels, recorder):
    night = utc(2026, 3, 22, 17, 0)  # 01:00 on 23 March in Shanghai
    run_sweep(app, night, channels=channels)
    assert recorder.sent == []  # nothing at night (call tasks aside: none due yet)
    (r1,) = _messages(session, kind="reminder")
    assert r1.status == "queued" and r1.not_before == utc(2026, 3, 23, 0, 0)  # 08:00 local
    run_sweep(app, utc(2026, 3, 23, 0, 0), channels=channels)
    assert [m.dedupe_key for m in recorder.sent] == [r1.dedupe_key]
    assert "2026年3月27日" in recorder.sent[0].body and recorder.sent[0].language == "zh_Hans"


def test_queued_reminder_is_superseded_so_downtime_sends_one(app, session, patient, channels, recorder):
    c1 = timepoints_of(session, patient)["sys-c1"]
    run_sweep(app, c1.opens_at + dt.timedelta(hours=1), channels=channels)  # 01:00 local: r1 waits
    run_sweep(app, c1.opens_at + 2 * D + dt.timedelta(hours=1), channels=channels)  # back after 2 days, at night
    mine = [m for m in _messages(session) if m.timepoint_id == c1.id]
    assert [(m.step, m.status, m.last_error) for m in mine] == [
        ("r1", "skipped", "superseded by r2"),
        ("r2", "queued", None),
    ]
    assert mine[0].dedupe_key.endswith(f"~void{mine[0].id}")  # a skipped row frees its key
    run_sweep(app, c1.opens_at + 2 * D + dt.timedelta(hours=8), channels=channels)  # 08:00 local
    assert [m.dedupe_key for m in recorder.sent if m.dedupe_key.startswith(f"tp:{c1.id}:")] == [mine[1].dedupe_key]


def test_no_reminder_once_the_form_is_done_or_the_patient_died(app, session, patient, channels, recorder):
    night = utc(2026, 3, 22, 17, 0)
    run_sweep(app, night, channels=channels)
    c1 = timepoints_of(session, patient)["sys-c1"]
    c1.completed_at = night
    session.flush()
    session.commit()
    run_sweep(app, utc(2026, 3, 23, 0, 0), channels=channels)
    assert recorder.sent == []
    assert [(m.status, m.last_error) for m in _messages(session, kind="reminder")] == [("skipped", "form completed")]
    treatment_events.set_patient_status(
        session,
        NURSE,
        patient,
        "died",
        status_date=dt.date(2026, 3, 23),
        reason="hospital report",
        now=utc(2026, 3, 23, 1, 0),
    )
    session.commit()
    run_sweep(app, utc(2026, 3, 23, 2, 0), channels=channels)
    assert recorder.sent == [] and _messages(session, status="queued") == []


def test_call_task_for_nurses_the_day_before_close(app, session, patient, channels, recorder):
    c1 = timepoints_of(session, patient)["sys-c1"]
    run_sweep(app, c1.closes_at - D + dt.timedelta(minutes=1), channels=channels)
    (task,) = _messages(session, kind="call_task")
    key = notifications.call_task_key(c1.id, notifications.window_key(c1.opens_at, c1.closes_at))
    assert (task.channel, task.dedupe_key, task.status) == ("task", key, "open")  # on the list, never "sent"
    assert task.language == "en" and patient.study_id in task.subject and "sys-c1" in task.subject
    assert recorder.sent == []
    # 23:01 local is quiet: the patient's r2 waits; the nurses' task does not.
    assert [m.status for m in _messages(session, kind="reminder")] == ["queued"]


def test_reminder_after_window_close_is_never_created(session, patient, render):
    c1 = timepoints_of(session, patient)["sys-c1"]
    # Last evening of the window: quiet hours outlast it, so the reminder is recorded as skipped.
    evening = c1.closes_at - dt.timedelta(hours=2)
    timepoints.sweep_statuses(session, evening)
    counts = notifications.queue_reminders(session, evening, SETTINGS, render)
    assert counts["skipped"] == 1 and counts["call_task"] == 1
    skipped = _messages(session, kind="reminder")[0]
    assert (skipped.status, skipped.last_error) == ("skipped", "quiet hours last until the window closes")
    timepoints.sweep_statuses(session, c1.closes_at)
    assert timepoints_of(session, patient)["sys-c1"].status == "overdue"
    assert notifications.queue_reminders(session, c1.closes_at, SETTINGS, render) == {}
    # The call task made just before close is work for the nurses: nothing sends or closes it.
    assert notifications.send_due(session, c1.closes_at, {}, SETTINGS) == {}
    assert [m.status for m in _messages(session, kind="call_task")] == ["open"]


def test_queueing_is_idempotent(session, patient, render):
    now = utc(2026, 3, 23, 4, 0)
    timepoints.sweep_statuses(session, now)
    first = notifications.queue_reminders(session, now, SETTINGS, render)
    assert first["reminder"] == 2
    assert notifications.queue_reminders(session, now, SETTINGS, render) == {}
    assert notifications.queue_reminders(session, now + dt.timedelta(hours=1), SETTINGS, render) == {}


def test_delivery_failures_retry_then_fail(session, patient, render):
    class Flaky:
        def deliver(self, message):
            raise DeliveryError("gateway timeout")

    now = utc(2026, 3, 23, 4, 0)
    timepoints.sweep_statuses(session, now)
    notifications.queue_reminders(session, now, SETTINGS, render)
    flaky = {"sms": Flaky(), "email": Flaky()}
    assert notifications.send_due(session, now, flaky, SETTINGS)["retry"] == 2
    message = _messages(session, kind="reminder")[0]
    assert (message.status, message.attempts, message.last_error) == ("queued", 1, "DeliveryError: gateway timeout")
    assert message.not_before == now + dt.timedelta(minutes=5)
    later = now
    for _ in range(SETTINGS.max_attempts - 1):
        later += dt.timedelta(hours=2)
        notifications.send_due(session, later, flaky, SETTINGS)
    assert {m.status for m in _messages(session, kind="reminder")} == {"failed"}


def test_interrupted_send_is_recovered_after_the_lease(session, patient, channels, recorder, render):
    now = utc(2026, 3, 23, 4, 0)
    timepoints.sweep_statuses(session, now)
    notifications.queue_reminders(session, now, SETTINGS, render)
    message = _messages(session, kind="reminder")[0]
    message.status, message.sent_at = "sending", now  # a scheduler died mid-delivery
    session.flush()
    notifications.send_due(session, now + dt.timedelta(minutes=5), channels, SETTINGS)
    assert message.dedupe_key not in {m.dedupe_key for m in recorder.sent}
    notifications.send_due(session, now + dt.timedelta(minutes=11), channels, SETTINGS)
    assert message.dedupe_key in {m.dedupe_key for m in recorder.sent}


def test_heartbeat_records_success_and_errors(app, session, patient, channels, monkeypatch):
    now = utc(2026, 3, 23, 4, 0)
    assert heartbeat.status(session, now, 30).stale
    assert run_sweep(app, now, channels=channels).ok
    beat = heartbeat.status(session, now + dt.timedelta(minutes=10), 30)
    assert not beat.stale and beat.last_ok_at == now and beat.last_error is None and beat.pid

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(notifications, "queue_reminders", broken)
    report = run_sweep(app, now + dt.timedelta(minutes=31), channels=channels)
    assert not report.ok
    session.expire_all()
    beat = heartbeat.status(session, now + dt.timedelta(minutes=31), 30)
    assert beat.stale and beat.last_ok_at == now and "reminders: RuntimeError: disk full" in beat.last_error
    assert "statuses" in report.steps and "outbox" in report.steps  # other steps still ran


def test_the_sweep_moves_and_audits_every_change_batch_by_batch(session, patient):
    """Each row whose derived status changed is moved, stamped with the sweep's time and audited
    once with its key, old and new status, patient and site; the checkpoint (a commit in the
    scheduler) runs after every batch, here of two rows."""
    now = utc(2026, 3, 22, 4, 0)
    session.expire_all()
    before = {tp.id: (tp.key, tp.status) for tp in session.scalars(select(Timepoint))}
    checkpoints = []
    counts = timepoints.sweep_statuses(session, now, batch=2, checkpoint=lambda: checkpoints.append(1))
    _assert_all_derived(session, now)
    after = {tp.id: tp for tp in session.scalars(select(Timepoint))}
    moved = {tp_id for tp_id, (_key, status) in before.items() if after[tp_id].status != status}
    assert len(moved) >= 3 and sum(counts.values()) == len(moved)
    assert len(checkpoints) == (len(moved) + 1) // 2
    assert all(after[tp_id].status_changed_at == now for tp_id in moved)
    audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "status").order_by(AuditEvent.id)).all()
    assert sorted(
        (a.entity_type, a.entity_id, a.patient_id, a.site_id, a.old, a.new, a.occurred_at) for a in audited
    ) == sorted(
        (
            "timepoint",
            str(tp_id),
            patient.id,
            patient.site_id,
            {"status": before[tp_id][1]},
            {"key": before[tp_id][0], "status": after[tp_id].status},
            now,
        )
        for tp_id in moved
    )


def test_a_sweep_moving_the_forms_of_1000_patients_audits_each_with_its_patients_site(session, factory):
    """1000 patients at two sites (two batches of the site look-up), each with a form whose window
    opened: every status change is audited with the site of the form's own patient."""
    sites = [factory.site(code="BIG1"), factory.site(code="BIG2")]
    now = utc(2026, 3, 22, 4, 0)
    session.execute(
        insert(Patient),
        [
            {
                "study_id": f"BIG-{i:04d}",
                "site_id": sites[i % 2].id,
                "arm": "A",
                "randomization_date": dt.date(2026, 3, 1),
                "language": "zh_Hans",
                "link_token_hash": f"big-{i:04d}",
                "created_at": now - D,
            }
            for i in range(1000)
        ],
    )
    patients = dict(session.execute(select(Patient.id, Patient.site_id).where(Patient.study_id.like("BIG-%"))).all())
    day = dt.date(2026, 3, 21)
    session.execute(
        insert(Timepoint),
        [
            {
                "patient_id": pid,
                "key": "baseline",
                "rule_id": "baseline",
                "kind": "questionnaire",
                "instruments": ["eortc_qlq_c30"],
                "anchor_kind": "randomization",
                "anchor_date": day,
                "target_date": day,
                "window_start": day,
                "window_end": day + 3 * D,
                "grace_end": day + 6 * D,
                "opens_at": now - D,
                "closes_at": now + 3 * D,
                "grace_closes_at": now + 6 * D,
                "status": "scheduled",
                "created_at": now - D,
            }
            for pid in patients
        ],
    )
    assert timepoints.sweep_statuses(session, now) == {"open": 1000}
    audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "status")).all()
    assert sorted((a.patient_id, a.site_id) for a in audited) == sorted(patients.items())


def test_a_form_another_sweep_moved_meanwhile_is_not_moved_or_audited_again(session, patient, monkeypatch):
    """Two sweeps at once: between this sweep's reading of the rows and its conditional update,
    the other one moves the first form of a transition (lowest id) and commits. This sweep leaves
    that form as the other one left it (status, time of the change) and does not audit it, and
    still moves and audits each of the others, in that transition and the rest."""
    now = utc(2026, 3, 22, 4, 0)
    other_at = now - dt.timedelta(seconds=30)
    session.expire_all()
    due: dict[tuple[str, str], list[int]] = {}
    for tp in session.scalars(select(Timepoint).where(Timepoint.status != "cancelled").order_by(Timepoint.id)):
        new = derive_status(tp, now, submitted=False, started=False, not_expected_reason=tp.not_expected_reason)
        if new != tp.status:
            due.setdefault((tp.status, new), []).append(tp.id)
    (old, new), ids = next(item for item in due.items() if len(item[1]) >= 2)
    taken = ids[0]
    real_site_ids = timepoints._site_ids

    def other_sweep_commits_first(session_, patient_ids):
        session_.execute(update(Timepoint).where(Timepoint.id == taken).values(status=new, status_changed_at=other_at))
        return real_site_ids(session_, patient_ids)

    monkeypatch.setattr(timepoints, "_site_ids", other_sweep_commits_first)
    counts = timepoints.sweep_statuses(session, now)
    everyone = [tp_id for group in due.values() for tp_id in group]
    assert sum(counts.values()) == len(everyone) - 1
    audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "status")).all()
    assert sorted(int(a.entity_id) for a in audited) == sorted(tp_id for tp_id in everyone if tp_id != taken)
    session.expire_all()
    assert (session.get(Timepoint, taken).status, session.get(Timepoint, taken).status_changed_at) == (new, other_at)
    assert {session.get(Timepoint, tp_id).status_changed_at for tp_id in ids[1:]} == {now}


def test_a_form_left_live_with_a_not_expected_reason_or_a_completion_is_moved_at_the_next_sweep(session, patient):
    """A form whose not-expected reason, or whose completion, was stored while its status stayed
    live (a write that stopped half way, imported data): the next sweep moves it to not expected
    (before its window opens, and it is never missed after its grace period) or to completed
    (while its window is still open), not only when a window boundary passes."""
    tps = timepoints_of(session, patient)
    dropped, sent = tps["sys-c1"], tps["diary-2026-03-20"]
    dropped.not_expected_reason = "withdrawn"
    sent.completed_at = utc(2026, 3, 20, 2, 0)
    session.flush()
    now = utc(2026, 3, 20, 5, 0)  # an hour after the fixture's reconcile
    assert (dropped.status, sent.status) == ("scheduled", "open") and now < dropped.opens_at
    assert sent.completed_at < now < sent.closes_at
    assert timepoints.sweep_statuses(session, now) == {"not_expected": 1, "completed": 1}
    tps = timepoints_of(session, patient)
    assert (tps["sys-c1"].status, tps["sys-c1"].not_expected_reason) == ("not_expected", "withdrawn")
    assert tps["diary-2026-03-20"].status == "completed"
    timepoints.sweep_statuses(session, dropped.grace_closes_at)
    assert timepoints_of(session, patient)["sys-c1"].status == "not_expected"
