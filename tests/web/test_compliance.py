"""Compliance figures on a hand-built data set equal hand-counted numbers; the query count is fixed.

Clock: FIXED_NOW = 2026-03-10 12:00 in Shanghai. Data (site S1):

    patient  arm  baseline (2026-02-01)        sys-c1                          other
    a1       A    completed on time, self      completed on time, interview    sys-c2 scheduled (future)
    a2       A    completed late, with help    missed: hospitalised            sys-c2 cancelled
    a3       A    missed: too_ill              not expected (died)             diary 03-01 not expected
    b1       B    missed, no reason*           completed on time, proxy        sys-c2 overdue (in grace)
    b2       B    partial, no reason           open (target 03-09)
    a1 diaries (nadir): 03-01 completed, 03-02 missed: forgot

    * stored as "overdue" by a sweep that stopped: the figures derive "missed" from the clock.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, select

from qol_app import policy
from qol_app.errors import ServiceError
from qol_app.models import Patient, Response
from qol_app.services import compliance, responses, worklist
from qol_app.services.audit import Actor
from qol_app.services.compliance import FormGroup, Group
from tests.factories import add_response, add_timepoint, isolated_client, login, no_csrf

D = dt.date
UTC = dt.UTC
NURSE = Actor("staff", None)


@pytest.fixture
def data(session, factory):
    s1 = factory.site(code="C1")
    p = {
        name: factory.patient(s1, arm=name[0].upper(), pin=None, study_id=f"C1-{name}").patient
        for name in ("a1", "a2", "a3", "b1", "b2")
    }
    p["a3"].status, p["a3"].status_date = "died", D(2026, 2, 20)
    base = D(2026, 2, 1)  # window 01-29..02-04 (Shanghai), closes 2026-02-04T16:00Z
    tp = {}
    tp["a1b"] = add_timepoint(
        session,
        p["a1"],
        "baseline",
        status="completed",
        target=base,
        completed_at=dt.datetime(2026, 2, 1, 2, tzinfo=UTC),
    )
    tp["a2b"] = add_timepoint(
        session,
        p["a2"],
        "baseline",
        status="completed",
        target=base,
        completed_at=dt.datetime(2026, 2, 5, 2, tzinfo=UTC),
    )
    add_timepoint(session, p["a3"], "baseline", status="missed", target=base, missed_reason="too_ill")
    add_timepoint(session, p["b1"], "baseline", status="overdue", target=base)
    add_timepoint(
        session, p["b2"], "baseline", status="partial", target=base, started_at=dt.datetime(2026, 2, 2, tzinfo=UTC)
    )
    c1 = D(2026, 3, 1)  # window 02-26..03-04, grace to 03-07: decided by 03-10
    tp["a1c"] = add_timepoint(
        session,
        p["a1"],
        "sys-c1",
        rule_id="after_systemic_cycle",
        status="completed",
        target=c1,
        completed_at=dt.datetime(2026, 3, 1, 5, tzinfo=UTC),
    )
    add_timepoint(
        session,
        p["a2"],
        "sys-c1",
        rule_id="after_systemic_cycle",
        status="missed",
        target=c1,
        missed_reason="hospitalised",
    )
    add_timepoint(
        session,
        p["a3"],
        "sys-c1",
        rule_id="after_systemic_cycle",
        status="not_expected",
        target=c1,
        not_expected_reason="died",
    )
    tp["b1c"] = add_timepoint(
        session,
        p["b1"],
        "sys-c1",
        rule_id="after_systemic_cycle",
        status="completed",
        target=c1,
        completed_at=dt.datetime(2026, 3, 2, 5, tzinfo=UTC),
    )
    add_timepoint(session, p["b2"], "sys-c1", rule_id="after_systemic_cycle", status="open", target=D(2026, 3, 9))
    add_timepoint(session, p["a1"], "sys-c2", rule_id="after_systemic_cycle", status="scheduled", target=D(2026, 3, 22))
    add_timepoint(session, p["a2"], "sys-c2", rule_id="after_systemic_cycle", status="cancelled", target=D(2026, 3, 22))
    add_timepoint(session, p["b1"], "sys-c2", rule_id="after_systemic_cycle", status="overdue", target=D(2026, 3, 5))
    tp["a1d1"] = add_timepoint(
        session,
        p["a1"],
        "diary-2026-03-01",
        kind="diary",
        status="completed",
        target=D(2026, 3, 1),
        completed_at=dt.datetime(2026, 3, 1, 12, tzinfo=UTC),
    )
    add_timepoint(
        session,
        p["a1"],
        "diary-2026-03-02",
        kind="diary",
        status="missed",
        target=D(2026, 3, 2),
        missed_reason="forgot",
    )
    add_timepoint(
        session,
        p["a3"],
        "diary-2026-03-01",
        kind="diary",
        status="not_expected",
        target=D(2026, 3, 1),
        not_expected_reason="died",
    )
    one = {"q1": 2}
    add_response(session, tp["a1b"], respondent="self", at=tp["a1b"].completed_at, answers=one)
    add_response(session, tp["a2b"], respondent="self_assisted", at=tp["a2b"].completed_at, answers=one)
    add_response(session, tp["a1c"], respondent="self", mode="interview", at=tp["a1c"].completed_at, answers=one)
    add_response(session, tp["b1c"], respondent="proxy", at=tp["b1c"].completed_at, answers=one)
    add_response(session, tp["a1d1"], respondent="self", at=tp["a1d1"].completed_at, answers={"headache": 0})
    return s1, p


def _figures(session, site, now):
    return compliance.compute(session, Patient.site_id == site.id, now, rule_order=["baseline", "after_systemic_cycle"])


def _counts(cell):
    return {
        "randomized": cell.randomized,
        "on_time": cell.on_time,
        "late": cell.late,
        "partial": cell.partial,
        "missed": cell.missed,
        "pending": cell.pending,
        "not_expected": cell.not_expected,
        "expected": cell.expected,
    }


def test_figures_equal_hand_counts(session, data, now):
    site, _p = data
    f = _figures(session, site, now)
    baseline = Group("questionnaire", "baseline", "baseline")
    c1 = Group("questionnaire", "after_systemic_cycle", "sys-c1")
    c2 = Group("questionnaire", "after_systemic_cycle", "sys-c2")
    diary = Group("diary", "nadir_diary", None)
    assert f.groups == [baseline, c1, c2, diary]
    assert f.randomized == {"A": 3, "B": 2}

    assert _counts(f.cell(baseline, "A")) == {
        "randomized": 3,
        "on_time": 1,
        "late": 1,
        "partial": 0,
        "missed": 1,
        "pending": 0,
        "not_expected": 0,
        "expected": 3,
    }
    assert f.cell(baseline, "A").rate == pytest.approx(2 / 3)
    assert f.cell(baseline, "A").reasons == {"too_ill": 1}
    assert _counts(f.cell(baseline, "B")) == {
        "randomized": 2,
        "on_time": 0,
        "late": 0,
        "partial": 1,
        "missed": 1,
        "pending": 0,
        "not_expected": 0,
        "expected": 2,
    }
    assert f.cell(baseline, "B").rate == 0 and f.cell(baseline, "B").without_reason == 2

    # The death leaves the denominator: 2 expected of 3 randomized in arm A.
    a = f.cell(c1, "A")
    assert _counts(a) == {
        "randomized": 3,
        "on_time": 1,
        "late": 0,
        "partial": 0,
        "missed": 1,
        "pending": 0,
        "not_expected": 1,
        "expected": 2,
    }
    assert a.rate == pytest.approx(1 / 2) and a.rate_randomized == pytest.approx(1 / 3)
    assert a.reasons == {"hospitalised": 1}
    b = f.cell(c1, "B")
    assert _counts(b) == {
        "randomized": 2,
        "on_time": 1,
        "late": 0,
        "partial": 0,
        "missed": 0,
        "pending": 1,
        "not_expected": 0,
        "expected": 1,
    }
    assert b.rate == 1.0 and b.rate_randomized == pytest.approx(1 / 2)

    # Scheduled and cancelled rows do not count at all; an overdue one is pending.
    assert _counts(f.cell(c2, "A"))["expected"] == 0 and f.cell(c2, "A").pending == 0
    assert (
        f.cell(c2, "A").randomized == 3 and f.cell(Group("questionnaire", "progression", "prog-1"), "B").randomized == 2
    )
    assert f.cell(c2, "B").pending == 1 and f.cell(c2, "B").rate is None

    d = f.cell(diary, "A")
    assert (d.expected, d.completed, d.missed, d.not_expected, d.reasons) == (2, 1, 1, 1, {"forgot": 1})

    # The questionnaire total of arm A sums its timepoints; the denominator per randomized stays 3.
    q_a = compliance.totals(f, "questionnaire", "A")
    assert _counts(q_a) == {
        "randomized": 3,
        "on_time": 2,
        "late": 1,
        "partial": 0,
        "missed": 2,
        "pending": 0,
        "not_expected": 1,
        "expected": 5,
    }
    assert (q_a.completed, q_a.rate_randomized, q_a.reasons) == (3, 1.0, {"too_ill": 1, "hospitalised": 1})
    q_b = compliance.totals(f, "questionnaire", "B")
    assert (q_b.randomized, q_b.partial, q_b.missed, q_b.pending, q_b.without_reason) == (2, 1, 1, 2, 2)

    assert f.help_share("A") == (1, 0, 4) and f.help_share("B") == (0, 1, 1)  # 4: with a1's diary
    assert f.modes["A"] == {"web": 3, "interview": 1}


def test_form_figures_equal_hand_counts(session, data, now):
    """Per form (one C30 per timepoint here): received = a sent or saved form with an answer.
    b2's partial baseline has no saved revision, so it is a missed form."""
    site, _p = data
    f = _figures(session, site, now)
    c30 = "eortc_qlq_c30"
    baseline = FormGroup("questionnaire", "baseline", "baseline", c30)
    c1 = FormGroup("questionnaire", "after_systemic_cycle", "sys-c1", c30)
    diary = FormGroup("diary", "nadir_diary", None, "symptom_diary")
    assert f.form_groups == [baseline, c1, FormGroup("questionnaire", "after_systemic_cycle", "sys-c2", c30), diary]
    a = f.form_cell(baseline, "A")
    assert (a.expected, a.received, a.on_time, a.late, a.missed, a.rate) == (3, 2, 1, 1, 1, pytest.approx(2 / 3))
    b = f.form_cell(baseline, "B")
    assert (b.expected, b.received, b.partial, b.missed, b.without_reason) == (2, 0, 0, 2, 2)
    a1 = f.form_cell(c1, "A")
    assert (a1.expected, a1.received, a1.not_expected, a1.rate_randomized) == (2, 1, 1, pytest.approx(1 / 3))
    d = f.form_cell(diary, "A")
    assert (d.expected, d.received, d.missed, d.not_expected, d.rate, d.rate_randomized) == (2, 1, 1, 1, 0.5, None)
    no_diary = f.form_cell(diary, "B")  # arm B has no diary day: still a diary, never per randomized
    assert (no_diary.kind, no_diary.randomized, no_diary.rate_randomized) == ("diary", 2, None)
    # The dashboard's footer: every questionnaire form of an arm summed, per randomized too.
    total = compliance.form_totals(f, "questionnaire", "A")
    assert _counts(total) == {
        "randomized": 3,
        "on_time": 2,
        "late": 1,
        "partial": 0,
        "missed": 2,
        "pending": 0,
        "not_expected": 1,
        "expected": 5,
    }
    assert (total.received, total.rate, total.rate_randomized) == (3, pytest.approx(3 / 5), 1.0)
    assert total.reasons == {"too_ill": 1, "hospitalised": 1}
    # b2's sys-c1 form (window open) and b1's sys-c2 form (in its grace period) are not decided yet.
    assert f.form_cell(c1, "B").pending == 1
    total_b = compliance.form_totals(f, "questionnaire", "B")
    assert (total_b.randomized, total_b.expected, total_b.received, total_b.missed, total_b.pending) == (2, 3, 1, 2, 2)
    diaries = compliance.form_totals(f, "diary", "A")
    assert (diaries.kind, diaries.expected, diaries.received, diaries.rate_randomized) == ("diary", 2, 1, None)


def test_site_comparison_for_several_sites(session, factory, data, now):
    site, _p = data
    s2 = factory.site(code="C2")
    c = factory.patient(s2, arm="A", pin=None, study_id="C2-c1").patient
    add_timepoint(session, c, "baseline", status="missed", target=D(2026, 2, 1))
    investigator = factory.staff("investigator", sites=[site, s2])
    f = compliance.compute(session, policy.patient_clause(investigator), now)
    assert f.site_ids == [site.id, s2.id]
    assert f.randomized == {"A": 4, "B": 2}  # both sites' arm-A patients in the denominator per randomized
    assert compliance.totals(f, "questionnaire", "A").randomized == 4
    assert (
        f.site_cell(site.id, "questionnaire", "A").expected,
        f.site_cell(site.id, "questionnaire", "A").completed,
    ) == (5, 3)
    other = f.site_cell(s2.id, "questionnaire", "A")
    assert (other.randomized, other.expected, other.completed, other.rate) == (1, 1, 0, 0.0)
    assert f.site_cell(s2.id, "diary", "B").randomized == 0
    assert f.site_cell(s2.id, "diary", "A").randomized == 1  # no diary there yet, still its denominator
    # The dashboard's site comparison per form: sent or saved forms received, per randomized too.
    forms = f.site_form_cell(site.id, "questionnaire", "A")
    assert (forms.randomized, forms.expected, forms.received, forms.rate_randomized) == (3, 5, 3, 1.0)
    other_forms = f.site_form_cell(s2.id, "questionnaire", "A")
    assert (other_forms.randomized, other_forms.expected, other_forms.missed, other_forms.rate) == (1, 1, 1, 0.0)
    diaries = f.site_form_cell(site.id, "diary", "A")  # diaries are never counted per randomized
    assert (diaries.kind, diaries.expected, diaries.received, diaries.rate_randomized) == ("diary", 2, 1, None)
    none_yet = f.site_form_cell(s2.id, "diary", "A")
    assert (none_yet.randomized, none_yet.kind, none_yet.expected, none_yet.rate_randomized) == (1, "diary", 0, None)
    assert f.site_form_cell(s2.id, "questionnaire", "B").randomized == 0  # nobody in arm B at C2
    # A form group with no form due in an arm still shows that arm's denominator per randomized.
    c2 = f.form_cell(FormGroup("questionnaire", "after_systemic_cycle", "sys-c2", "eortc_qlq_c30"), "A")
    assert (c2.randomized, c2.expected, c2.kind) == (4, 0, "questionnaire")
    # b2's sys-c1 (open) and b1's sys-c2 (in its grace period): two undecided timepoints at C1.
    assert f.site_cell(site.id, "questionnaire", "B").pending == 2


def test_dashboard_shows_the_figures_and_the_site_comparison(app, session, factory, data):
    site, _p = data
    no_csrf(app)
    s2 = factory.site(code="C2")
    factory.patient(s2, arm="B", pin=None, study_id="C2-b9")
    nurse = factory.staff("investigator", sites=[site, s2])
    client = isolated_client(app)
    login(client, nurse)
    body = client.get(f"/staff/?site={site.id}").get_data(as_text=True)
    assert "1 / 3 (33%)" in body  # sys-c1 arm A: received / randomized
    assert "Sites compared" not in body
    assert "Sites compared" in client.get("/staff/").get_data(as_text=True)


def _count_queries(app):
    statements: list[str] = []

    def listener(conn, cursor, statement, *args):
        statements.append(statement)

    engine = app.extensions["qol_db"]["engine"]
    event.listen(engine, "before_cursor_execute", listener)
    return statements, lambda: event.remove(engine, "before_cursor_execute", listener)


def _more_patients(session, factory, site, n: int, start: int) -> None:
    for i in range(start, start + n):
        patient = factory.patient(site, arm="AB"[i % 2], pin=None, study_id=f"C1-x{i}").patient
        add_timepoint(
            session,
            patient,
            "baseline",
            status="missed" if i % 3 else "completed",
            target=D(2026, 2, 1),
            completed_at=None if i % 3 else dt.datetime(2026, 2, 1, tzinfo=UTC),
        )
        add_timepoint(session, patient, "diary-2026-03-09", kind="diary", status="open", target=D(2026, 3, 9))


def test_query_count_does_not_grow_with_patients(app, session, factory, data, now):
    site, _p = data
    no_csrf(app)
    nurse = factory.staff("nurse", sites=[site])
    client = isolated_client(app)
    login(client, nurse)
    counts = []
    for extra in (5, 30):
        _more_patients(session, factory, site, extra, start=len(counts) * 100)
        statements, stop = _count_queries(app)
        try:
            compliance.compute(session, Patient.site_id == site.id, now)
            n_compute = len(statements)
            worklist.build(session, Patient.site_id == site.id, now)
            worklist.missing_reasons(session, Patient.site_id == site.id, now)
            n_services = len(statements)
            statements.clear()
            assert client.get("/staff/").status_code == 200
            n_page = len(statements)
            if extra == 30:
                print(*(" ".join(q.split())[:150] for q in statements), sep="\n")
        finally:
            stop()
        counts.append((n_compute, n_services, n_page))
    print(f"\nqueries (compliance, +work list, dashboard page) with 10 and 40 patients: {counts}")
    assert counts[0] == counts[1]
    assert counts[0][0] == 4


def test_work_list_categories_and_order(session, factory, now):
    from qol_app.models import OutboxMessage
    from tests.factories import add_alert

    site, other = factory.site(code="W1"), factory.site(code="W2")
    p1, p2, p3 = (factory.patient(site, pin=None, study_id=f"W1-{i}").patient for i in (1, 2, 3))
    stranger = factory.patient(other, pin=None, study_id="W2-1").patient
    add_alert(session, p2, level="amber", at=now - dt.timedelta(hours=3))
    add_alert(session, p1, level="red", at=now - dt.timedelta(hours=1))
    done = add_alert(session, p3, level="red", at=now - dt.timedelta(hours=2))
    done.acknowledged_at = now
    add_alert(session, stranger, level="red", at=now)
    today = add_timepoint(session, p1, "diary-2026-03-10", kind="diary", status="open", target=D(2026, 3, 10))
    closing = add_timepoint(session, p2, "sys-c1", status="open", target=D(2026, 3, 9), before=3, after=2)
    overdue = add_timepoint(session, p3, "sys-c2", status="open", target=D(2026, 3, 5))  # stale status
    add_timepoint(session, p3, "sys-c3", status="open", target=D(2026, 3, 12))  # closes in 5 days: not listed
    add_timepoint(session, p2, "prog-1", status="scheduled", target=D(2026, 3, 14), before=0)
    add_timepoint(session, stranger, "diary-2026-03-10", kind="diary", status="open", target=D(2026, 3, 10))
    for key, status in (("call:1", "open"), ("call:2", "done")):  # open: on the list until an outcome
        session.add(
            OutboxMessage(
                dedupe_key=key,
                kind="call_task",
                channel="task",
                patient_id=p2.id,
                language="en",
                subject="Call about missed forms",
                body="",
                status=status,
                created_at=now,
            )
        )
    session.flush()
    work = worklist.build(session, Patient.site_id == site.id, now)
    listed = [(it.category, it.study_id) for it in work.items]
    assert listed == [
        ("red", "W1-1"),
        ("amber", "W1-2"),
        ("due_today", "W1-1"),
        ("closing", "W1-2"),
        ("overdue", "W1-3"),
        ("call", "W1-2"),
    ]
    assert [it.timepoint for it in work.items if it.timepoint] == [today, closing, overdue]


def test_dashboard_banner_when_the_scheduler_is_stale(app, session, factory, now):
    from qol_app.services import heartbeat

    no_csrf(app)
    site = factory.site(code="H1")
    client = isolated_client(app)
    login(client, factory.staff("nurse", sites=[site]))
    stale = "The scheduler has not run recently"
    assert stale in client.get("/staff/").get_data(as_text=True)  # never ran
    heartbeat.beat(session, now - dt.timedelta(minutes=5))
    assert stale not in client.get("/staff/").get_data(as_text=True)
    app.config["FROZEN_NOW"] = now + dt.timedelta(minutes=app.config["SCHEDULER_STALE_MINUTES"])
    login(client, factory.staff("nurse", sites=[site]))
    assert stale in client.get("/staff/").get_data(as_text=True)


def test_arm_totals_add_up_every_timepoint_and_an_arm_without_patients_counts_zero(session, factory, now):
    """Two arm-A patients, each late, partial or not offered at more than one timepoint: the arm's
    total adds them all up; arm B, with nobody randomized at this site, totals zero everywhere."""
    site = factory.site(code="C3")
    t1, t2 = (factory.patient(site, arm="A", pin=None, study_id=f"C3-t{i}").patient for i in (1, 2))
    late = {"baseline": dt.datetime(2026, 2, 5, 2, tzinfo=UTC), "sys-c1": dt.datetime(2026, 3, 5, 2, tzinfo=UTC)}
    for key, target in (("baseline", D(2026, 2, 1)), ("sys-c1", D(2026, 3, 1))):
        rule = {"rule_id": "after_systemic_cycle"} if key == "sys-c1" else {}
        add_timepoint(session, t1, key, status="completed", target=target, completed_at=late[key], **rule)
        add_timepoint(session, t2, key, status="partial", target=target, started_at=late[key], **rule)
    for patient, key, target in ((t1, "sys-c2", D(2026, 2, 15)), (t2, "sys-c3", D(2026, 2, 20))):
        add_timepoint(
            session,
            patient,
            key,
            rule_id="after_systemic_cycle",
            status="missed",
            target=target,
            missed_reason="not_offered",
        )
    for patient, key in ((t1, "sys-c4"), (t2, "sys-c5")):
        add_timepoint(
            session,
            patient,
            key,
            rule_id="after_systemic_cycle",
            status="not_expected",
            target=D(2026, 3, 20),
            not_expected_reason="withdrawn",
        )
    f = _figures(session, site, now)
    a = compliance.totals(f, "questionnaire", "A")
    assert (a.randomized, a.on_time, a.late, a.partial, a.missed, a.not_offered) == (2, 0, 2, 2, 0, 2)
    assert (a.expected, a.not_expected, a.rate, a.without_reason) == (6, 2, pytest.approx(2 / 6), 2)
    # The site comparison adds the same forms up timepoint by timepoint.
    at_site = f.site_cell(site.id, "questionnaire", "A")
    assert (at_site.late, at_site.partial, at_site.not_offered, at_site.not_expected) == (2, 2, 2, 2)
    assert (at_site.expected, at_site.reasons) == (6, {"": 2})
    assert f.cell(Group("questionnaire", "baseline", "baseline"), "B").randomized == 0
    assert f.form_cell(FormGroup("questionnaire", "baseline", "baseline", "eortc_qlq_c30"), "B").randomized == 0
    b = compliance.totals(f, "questionnaire", "B")
    assert (b.randomized, b.expected, b.rate, b.rate_randomized) == (0, 0, None, None)
    b_forms = compliance.form_totals(f, "questionnaire", "B")
    assert (b_forms.randomized, b_forms.expected, b_forms.received, b_forms.rate_randomized) == (0, 0, 0, None)


def test_a_timepoint_is_counted_from_the_instant_its_window_opens_and_missed_from_the_end_of_grace(session, factory):
    """A post-cycle form whose window opens at midnight, 20 March (Shanghai): an instant before, the
    timepoint is not in the figures at all (scheduled); at midnight it is pending, and it is
    missed from the instant its grace period ends. A cancelled timepoint is never in them."""
    site = factory.site(code="C4")
    patient = factory.patient(site, arm="A", pin=None, study_id="C4-o1").patient
    tp = add_timepoint(
        session, patient, "sys-c1", rule_id="after_systemic_cycle", status="scheduled", target=D(2026, 3, 23)
    )
    add_timepoint(session, patient, "sys-c0", rule_id="after_systemic_cycle", status="cancelled", target=D(2026, 3, 2))
    opens = dt.datetime(2026, 3, 19, 16, tzinfo=UTC)
    assert tp.opens_at == opens
    before = _figures(session, site, opens - dt.timedelta(microseconds=1))
    assert before.groups == [] and before.form_groups == []
    at = _figures(session, site, opens)
    c1 = Group("questionnaire", "after_systemic_cycle", "sys-c1")
    assert at.groups == [c1]
    assert (at.cell(c1, "A").pending, at.cell(c1, "A").expected) == (1, 0)
    # ... and missed at the instant its grace period ends (never sent, never begun).
    closed = _figures(session, site, tp.grace_closes_at)
    assert (closed.cell(c1, "A").pending, closed.cell(c1, "A").missed, closed.cell(c1, "A").expected) == (0, 1, 1)
    form = closed.form_cell(FormGroup("questionnaire", "after_systemic_cycle", "sys-c1", "eortc_qlq_c30"), "A")
    assert (form.pending, form.missed, form.expected) == (0, 1, 1)
    assert _figures(session, site, tp.grace_closes_at - dt.timedelta(microseconds=1)).cell(c1, "A").pending == 1


def test_a_form_sent_at_the_instant_its_window_closes_is_late_an_instant_earlier_on_time(session, factory, now):
    """Two baselines sent in the grace period's first instant and in the window's last one: the
    first is late, the second on time, in the timepoint table and in the per-form table."""
    site = factory.site(code="C5")
    by_name = {name: factory.patient(site, arm="A", pin=None, study_id=f"C5-{name}").patient for name in "lo"}
    closes = None
    for name, patient in by_name.items():
        tp = add_timepoint(session, patient, "baseline", status="completed", target=D(2026, 2, 1))
        closes = tp.closes_at
        tp.completed_at = closes if name == "l" else closes - dt.timedelta(microseconds=1)
        add_response(session, tp, at=tp.completed_at, answers={"q1": 2})
    assert closes == dt.datetime(2026, 2, 4, 16, tzinfo=UTC)  # midnight after 4 February, Shanghai
    f = _figures(session, site, now)
    cell = f.cell(Group("questionnaire", "baseline", "baseline"), "A")
    assert (cell.on_time, cell.late, cell.expected) == (1, 1, 2)
    form = f.form_cell(FormGroup("questionnaire", "baseline", "baseline", "eortc_qlq_c30"), "A")
    assert (form.on_time, form.late, form.expected, form.received) == (1, 1, 2, 2)


def test_a_nurses_correction_after_the_window_closed_leaves_a_form_sent_on_time_on_time(session, factory, now):
    """Lateness is the patient's own sending (revision 0): a baseline sent on time and corrected
    by a nurse weeks after its window closed is still on time in the per-form table."""
    site = factory.site(code="C6")
    patient = factory.patient(site, arm="A", pin=None, study_id="C6-c1").patient
    tp = add_timepoint(
        session,
        patient,
        "baseline",
        status="completed",
        target=D(2026, 2, 1),
        completed_at=dt.datetime(2026, 2, 1, 2, tzinfo=UTC),
    )
    sent = add_response(session, tp, at=tp.completed_at, answers={"q1": 2})
    nurse = factory.staff("nurse", sites=[site])
    corrected_at = tp.closes_at + dt.timedelta(days=20)
    responses.correct_response(session, nurse, sent, {"q1": 3}, "paper form says 3", corrected_at)
    form = _figures(session, site, now).form_cell(
        FormGroup("questionnaire", "baseline", "baseline", "eortc_qlq_c30"), "A"
    )
    assert (form.on_time, form.late, form.received) == (1, 0, 1)


def test_a_form_takes_a_missed_reason_only_while_the_clock_makes_it_missed_or_partial(session, factory, now):
    """The nurse's status of a form (timeline, missed-reason page): a not-expected or cancelled form
    stays so after its window, never "missed"; one begun and left is partial, one never begun
    missed; only those two take a reason."""
    site = factory.site(code="C5")
    nurse = factory.staff("nurse", sites=[site])
    patient = factory.patient(site, arm="A", pin=None, study_id="C5-m1").patient
    past = D(2026, 2, 1)
    rows = {
        "not_expected": add_timepoint(
            session,
            patient,
            "sys-c1",
            rule_id="after_systemic_cycle",
            status="not_expected",
            target=past,
            not_expected_reason="died",
        ),
        "cancelled": add_timepoint(
            session, patient, "sys-c2", rule_id="after_systemic_cycle", status="cancelled", target=past
        ),
        "partial": add_timepoint(
            session,
            patient,
            "sys-c3",
            rule_id="after_systemic_cycle",
            status="overdue",
            target=past,
            started_at=dt.datetime(2026, 2, 2, tzinfo=UTC),
        ),
        "missed": add_timepoint(
            session, patient, "sys-c4", rule_id="after_systemic_cycle", status="overdue", target=past
        ),
    }
    assert {status: compliance.current_status(tp, now) for status, tp in rows.items()} == {
        "not_expected": "not_expected",
        "cancelled": "cancelled",
        "partial": "partial",
        "missed": "missed",
    }
    for status in ("not_expected", "cancelled"):
        with pytest.raises(ServiceError, match="Only a missed or partial form"):
            compliance.set_missed_reason(
                session, NURSE, nurse, rows[status], "too_ill", None, change_reason=None, now=now
            )
    for status in ("partial", "missed"):
        compliance.set_missed_reason(session, NURSE, nurse, rows[status], "too_ill", None, change_reason=None, now=now)
        assert rows[status].missed_reason == "too_ill"


def test_help_and_mode_counts_take_each_arms_first_sent_forms_of_the_scope_once(session, factory, now):
    """Who answered and how (the dashboard's help share and modes): per arm, each form sent by the
    patient's side once (revision 0), never a form only begun, a staff correction, or a patient
    outside the scope."""
    site, elsewhere = factory.site(code="C6"), factory.site(code="C7")
    a, b = (factory.patient(site, arm=arm, pin=None, study_id=f"C6-{arm}").patient for arm in "AB")
    outside = factory.patient(elsewhere, arm="B", pin=None, study_id="C7-B").patient
    sent = dt.datetime(2026, 3, 1, 5, tzinfo=UTC)
    tps = {}
    for patient, key in ((a, "sys-c1"), (a, "sys-c2"), (b, "sys-c1"), (b, "sys-c2"), (outside, "sys-c1")):
        tp = add_timepoint(
            session,
            patient,
            key,
            rule_id="after_systemic_cycle",
            status="completed",
            target=D(2026, 3, 1),
            completed_at=sent,
        )
        tps[(patient.id, key)] = tp
    for patient, key in ((a, "sys-c1"), (b, "sys-c1"), (b, "sys-c2"), (outside, "sys-c1")):
        add_response(session, tps[(patient.id, key)], respondent="self", at=sent, answers={"q1": 2})
    first = session.scalars(select(Response).where(Response.timepoint_id == tps[(a.id, "sys-c1")].id)).one()
    session.add(
        Response(
            **{c: getattr(first, c) for c in ("timepoint_id", "patient_id", "instrument_id", "instrument_version")},
            **{c: getattr(first, c) for c in ("language", "wording_version", "respondent", "mode", "started_at")},
            revision=1,
            status="submitted",
            submitted_at=sent,
            supersedes_id=first.id,
            correction_reason="transcription error",
        )
    )
    begun = add_response(session, tps[(a.id, "sys-c2")], respondent="self", at=sent, answers={"q1": 1})
    begun.status, begun.submitted_at = "in_progress", None
    session.flush()
    # A rule the dashboard's order does not name comes after those it names.
    add_timepoint(session, a, "prog-1", rule_id="progression", status="missed", target=D(2026, 2, 20))
    f = _figures(session, site, now)
    assert [g.key for g in f.groups] == ["sys-c1", "sys-c2", "prog-1"]
    assert (f.help_share("A"), f.help_share("B")) == ((0, 0, 1), (0, 0, 2))
    assert (f.modes["A"], f.modes["B"]) == ({"web": 1}, {"web": 2})


def test_a_missed_reason_is_checked_stored_and_audited_with_what_it_replaced(session, factory, now):
    """The nurse's reason for a missed form: refused unless the form is missed or partial, the
    reason known, the form offered, Other described and a change explained (blank text counts as
    none); stored trimmed with who gave it; audited with the old values only when there were any;
    giving the same reason again changes and audits nothing."""
    from qol_app.models import AuditEvent

    site = factory.site(code="C8")
    nurse = factory.staff("nurse", sites=[site])
    patient = factory.patient(site, arm="A", pin=None, study_id="C8-1").patient
    past = D(2026, 2, 1)
    missed = add_timepoint(session, patient, "sys-c1", rule_id="after_systemic_cycle", status="overdue", target=past)
    open_now = add_timepoint(
        session, patient, "sys-c2", rule_id="after_systemic_cycle", status="open", target=now.date()
    )
    never = add_timepoint(
        session,
        patient,
        "sys-c3",
        rule_id="after_systemic_cycle",
        status="missed",
        target=past,
        missed_reason="not_offered",
    )

    def give(tp, reason, text=None, change=None):
        compliance.set_missed_reason(session, NURSE, nurse, tp, reason, text, change_reason=change, now=now)

    def audited():
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "missed_reason", AuditEvent.entity_id == str(missed.id))
            .order_by(AuditEvent.id)
        ).all()
        return [(e.old, e.new, e.reason, e.patient_id, e.site_id) for e in rows]

    for tp, reason, text, change, said in (
        (open_now, "too_ill", None, None, "Only a missed or partial form takes a reason."),
        (missed, "bored", None, None, "Unknown reason bored."),
        (never, "too_ill", None, None, "This form was never offered to the patient: its reason is administrative."),
        (missed, "other", " \t ", None, 'The reason "Other" needs a description.'),
        (missed, "other", None, None, 'The reason "Other" needs a description.'),
    ):
        with pytest.raises(ServiceError) as refused:
            give(tp, reason, text, change)
        assert str(refused.value) == said  # what the nurse reads, word for word
    assert (missed.missed_reason, open_now.missed_reason, never.missed_reason) == (None, None, "not_offered")
    assert audited() == []

    give(missed, "other", "  moved to another city  ")
    assert (missed.missed_reason, missed.missed_reason_text, missed.missed_reason_by) == (
        "other",
        "moved to another city",
        nurse.id,
    )
    first = {"missed_reason": "other", "missed_reason_text": "moved to another city"}
    assert audited() == [(None, first, None, patient.id, site.id)]

    for change in (None, "   "):
        with pytest.raises(ServiceError) as refused:
            give(missed, "hospitalised", None, change)
        assert str(refused.value) == "Changing an earlier reason needs a reason for the change."
    assert missed.missed_reason == "other"
    give(missed, "other", "moved to another city", "  same again  ")  # nothing new: nothing recorded
    assert len(audited()) == 1

    give(missed, "hospitalised", "  ", " ward called back ")
    assert (missed.missed_reason, missed.missed_reason_text) == ("hospitalised", None)
    second = {"missed_reason": "hospitalised", "missed_reason_text": None}
    assert audited() == [
        (None, first, None, patient.id, site.id),
        (first, second, "ward called back", patient.id, site.id),
    ]
