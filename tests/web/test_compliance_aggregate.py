"""The dashboard's per-form figures come from SQL aggregates (``services.compliance``); the rule
is ``scheduling.forms`` (``current_revision``, ``form_status``, ``answered_items``,
``is_received``), applied here form by form to the ORM rows, as the export does. On awkward data
(every item skipped, saved not sent, partial, corrections, not offered, deaths, answers saved
after the instant) and at many instants, both give the same cells, on both databases."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import select

from qol_app.models import Answer, Patient, Response, Timepoint
from qol_app.scheduling import forms as form_rules
from qol_app.services import compliance
from qol_app.services.compliance import FormCell, FormGroup

C30, BN20, EQ5D, DIARY = "eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l", "symptom_diary"
DAY = dt.timedelta(days=1)


def _revision(session, tp, instrument, *, revision=0, started, sent=None, answers=(), answered_at=None):
    """A revision written directly; ``answers``: item -> value (None: skipped)."""
    response = Response(
        timepoint_id=tp.id,
        patient_id=tp.patient_id,
        instrument_id=instrument,
        instrument_version="1",
        revision=revision,
        language="zh_Hans",
        wording_version="own",
        respondent="self",
        status="submitted" if sent else "in_progress",
        started_at=started,
        submitted_at=sent,
    )
    session.add(response)
    session.flush()
    for item, value in dict(answers).items():
        at = answered_at or started
        session.add(Answer(response_id=response.id, item_id=item, value=value, skipped=value is None, answered_at=at))
    session.flush()
    return response


@pytest.fixture
def awkward(session, factory, now):
    """Two sites, both arms; timepoints whose windows close at ``now`` + 1 day (grace + 2)."""
    site_b = factory.site()
    a = factory.patient(arm="A").patient
    b = factory.patient(site_b, arm="B").patient
    dead = factory.patient(arm="B").patient
    opens, closes, grace = now - 3 * DAY, now + DAY, now + 2 * DAY

    def tp(patient, instruments=(C30, BN20, EQ5D), **kw):
        kw.setdefault("rule_id", "after_systemic_cycle")
        return factory.timepoint(
            patient, instruments=instruments, opens_at=opens, closes_at=closes, grace_closes_at=grace, **kw
        )

    t = tp(a, key="sys-c1")
    _revision(session, t, C30, started=opens, sent=opens + DAY, answers={"q1": 2, "q2": None})
    _revision(session, t, BN20, started=opens, sent=opens + DAY, answers={"q1": None, "q2": None})  # all skipped
    _revision(session, t, EQ5D, started=opens, answers={"mo": 2}, answered_at=now + 3 * DAY)  # saved later
    t = tp(a, key="sys-c2", missed_reason="too_ill")
    _revision(session, t, C30, started=opens, answers={"q1": 1})  # saved, never sent: partial
    _revision(session, t, BN20, started=opens)  # started, nothing answered
    _revision(session, t, EQ5D, started=now + 4 * DAY, sent=now + 4 * DAY, answers={"mo": 1})  # sent in grace
    t = tp(b, key="sys-c1")
    _revision(session, t, C30, started=opens, sent=now + 1.5 * DAY, answers={"q1": 3})  # late
    _revision(  # a correction, itself all skipped, sent later
        session, t, C30, revision=1, started=now + 5 * DAY, sent=now + 5 * DAY, answers={"q1": None}
    )
    _revision(session, t, BN20, started=opens, sent=opens + DAY, answers={"q1": 1})
    _revision(session, t, BN20, revision=1, started=now + 5 * DAY, answers={"q1": 2})  # correction not sent
    _revision(session, t, EQ5D, revision=1, started=opens, sent=opens + DAY, answers={"mo": 3})  # no revision 0
    _revision(session, t, "symptom_diary", started=opens, sent=opens, answers={"headache": 1})  # not its form
    t = tp(b, key="sys-c2", missed_reason="not_offered")
    _revision(session, t, C30, started=now + 5 * DAY, answers={"q1": 2})  # started after the grace period
    tp(b, key="sys-c3")  # nothing at all
    t = tp(b, key="sys-c4", status="cancelled")
    _revision(session, t, C30, started=opens, sent=opens, answers={"q1": 1})
    t = tp(dead, key="sys-c1", not_expected_reason="died")
    _revision(session, t, C30, started=opens, answers={"q1": 1})
    t = tp(dead, key="sys-c2", not_expected_reason="died")
    _revision(session, t, C30, started=opens, sent=opens + DAY, answers={"q1": 1})  # sent before the death
    for n, patient in enumerate((a, b, dead)):
        for day in range(3):
            d = factory.timepoint(
                patient,
                instruments=[DIARY],
                kind="diary",
                rule_id="nadir_diary",
                key=f"diary-{n}-{day}",
                opens_at=opens + day * DAY,
                closes_at=opens + (day + 1) * DAY,
                grace_closes_at=opens + (day + 2) * DAY,
                not_expected_reason="died" if patient is dead and day == 2 else None,
            )
            if day == 0:
                _revision(session, d, DIARY, started=d.opens_at, sent=d.opens_at, answers={"headache": 1})
            elif day == 1:
                _revision(session, d, DIARY, started=d.opens_at, answers={"headache": None})
    return [a.id, b.id, dead.id]


def _per_row(session, ids, now, rule):
    """The rule applied form by form to the ORM rows, cells keyed like ``compute``'s."""
    by_form: dict = {}
    by_site: dict = {}
    tps = session.scalars(
        select(Timepoint).where(
            Timepoint.patient_id.in_(ids), Timepoint.status != "cancelled", Timepoint.opens_at <= now
        )
    )
    for tp in tps:
        patient = session.get(Patient, tp.patient_id)
        for inst in tp.instruments:
            revisions = session.scalars(
                select(Response).where(Response.timepoint_id == tp.id, Response.instrument_id == inst)
            ).all()
            current, started = form_rules.current_revision(revisions, now)
            submitted = current is not None and current.status == "submitted" and current.submitted_at <= now
            status = form_rules.form_status(
                tp, now, submitted=submitted, started=started, not_expected_reason=tp.not_expected_reason
            )
            if status is None:
                continue
            answered = [a.answered_at for a in (current.answers if current else ()) if not a.skipped]
            n = form_rules.answered_items(len(answered), min(answered, default=None), submitted=submitted, as_of=now)
            received = form_rules.is_received(status, n, rule)
            late = any(
                r.revision == 0 and r.status == "submitted" and now >= r.submitted_at >= tp.closes_at for r in revisions
            )
            group = FormGroup(tp.kind, tp.rule_id, None if tp.kind == "diary" else tp.key, inst)
            for key, cells in (((group, patient.arm), by_form), ((patient.site_id, tp.kind, patient.arm), by_site)):
                cell = cells.setdefault(key, FormCell())
                cell.add(status, late, tp.missed_reason, 1)
                cell.received += int(received)
    return by_form, by_site


def _figures(cells):
    names = ("on_time", "late", "partial", "missed", "not_offered", "pending", "not_expected", "received")
    return {key: (*(getattr(c, n) for n in names), dict(c.reasons)) for key, c in cells.items()}


@pytest.mark.parametrize("rule", sorted(form_rules.RECEIVED_RULES))
def test_aggregates_give_the_per_row_rules_figures_at_every_instant(session, awkward, now, rule):
    ids = awkward
    seen: Counter = Counter()
    for hours in range(-80, 24 * 7, 6):
        at = now + dt.timedelta(hours=hours)
        figures = compliance.compute(session, Patient.id.in_(ids), at, received_rule=rule)
        by_form, by_site = _per_row(session, ids, at, rule)
        assert _figures(figures.by_form) == _figures(by_form), at
        assert _figures(figures.by_site_form) == _figures(by_site), at
        for cell in figures.by_form.values():
            seen.update({name: getattr(cell, name) for name in ("late", "partial", "missed", "received")})
            seen.update({"not_offered": cell.not_offered, "not_expected": cell.not_expected})
    # The data does reach every awkward case somewhere.
    assert all(seen[name] > 0 for name in ("late", "partial", "missed", "received", "not_offered", "not_expected"))


def test_aggregates_give_the_per_row_rules_figures_at_the_instants_the_data_changes(session, awkward, now):
    """The same comparison at each instant a revision was begun, answered or sent, or a window
    opened, closed or ended its grace period, and a microsecond before: what happens at an
    instant counts from that instant (begun, sent, answered by ``now``; late from the close)."""
    ids = awkward
    instants = set()
    for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id.in_(ids))):
        instants |= {tp.opens_at, tp.closes_at, tp.grace_closes_at}
    for response in session.scalars(select(Response).where(Response.patient_id.in_(ids))):
        instants |= {response.started_at, response.submitted_at} - {None}
        instants |= {answer.answered_at for answer in response.answers}
    rule = form_rules.COMPLIANCE_RECEIVED_RULE
    for at in sorted(instants):
        for when in (at - dt.timedelta(microseconds=1), at):
            figures = compliance.compute(session, Patient.id.in_(ids), when, received_rule=rule)
            by_form, by_site = _per_row(session, ids, when, rule)
            assert _figures(figures.by_form) == _figures(by_form), when
            assert _figures(figures.by_site_form) == _figures(by_site), when
