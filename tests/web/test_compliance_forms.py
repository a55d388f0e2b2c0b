"""Compliance per form (CLINICAL.md §3): the dashboard and the export count the same forms.

A form (timepoint x instrument) is received when at least one item is answered (the setting
``COMPLIANCE_RECEIVED_RULE``); a form with every item skipped is not. Diaries are counted per
expected diary day. Every missed or partial form carries a reason code in exports.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import true

from qol_app.export import build
from qol_app.export.source import ExportFilters, Source
from qol_app.models import Patient
from qol_app.scheduling.forms import NOT_RECORDED, is_received
from qol_app.services import compliance, responses, worklist
from qol_app.services.audit import Actor
from qol_app.services.compliance import FormGroup, Group

UTC = dt.UTC
C30, BN20, EQ5D = "eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l"


def _fill(session, patient, tp, instrument_id, answers, at, *, send=True):
    actor = Actor("patient", str(patient.id))
    if tp.respondent is None:
        responses.set_respondent(session, actor, tp, "self", None, at)
    instrument = responses.registry().get(instrument_id)
    texts = responses.localized(session, instrument, patient.language)
    response = responses.start_response(session, actor, tp, texts, at)
    items = responses.presented_items(instrument, patient)
    responses.save_page(session, actor, response, items, answers, at, skip=items)
    if send:
        responses.submit(session, actor, response, patient, at)
    return response


def _export_forms(session, as_of, **kw):
    spec = build.ExportSpec(filters=ExportFilters(), as_of=as_of, **kw)
    trial = build.load(Source(session, spec.filters, spec.instruments), spec)
    return trial, build.forms(trial).table.to_pylist()


def _export_counts(rows, forms):
    """(group, arm) -> (expected, received) from the export's forms dataset, grouped like the
    dashboard: questionnaires by timepoint and instrument, diaries by rule."""
    out: Counter = Counter()
    for row, form in zip(rows, forms, strict=True):
        tp = form.timepoint
        group = FormGroup(tp.kind, tp.rule_id, None if tp.kind == "diary" else tp.key, row["instrument"])
        if row["status"] in ("completed", "partial", "missed"):
            out[(group, row["arm"], "expected")] += 1
        out[(group, row["arm"], "received")] += int(bool(row["received"]))
    return out


def _dashboard_counts(figures):
    out: Counter = Counter()
    for (group, arm), cell in figures.by_form.items():
        out[(group, arm, "expected")] += cell.expected
        out[(group, arm, "received")] += cell.received
    return out


@pytest.fixture
def visit(session, factory, now):
    """One patient whose cycle-1 visit (C30 + BN20 + EQ-5D-5L) had C30 and BN20 sent, EQ-5D-5L
    not; the window and grace period are over at ``now``."""
    enrolled = factory.patient(arm="B", randomization_date=dt.date(2026, 1, 5))
    patient = enrolled.patient
    opens = now - dt.timedelta(days=12)
    tp = factory.timepoint(
        patient,
        key="sys-c1",
        rule_id="after_systemic_cycle",
        instruments=[C30, BN20, EQ5D],
        opens_at=opens,
        closes_at=opens + dt.timedelta(days=7),
        grace_closes_at=opens + dt.timedelta(days=10),
        target_date=(opens + dt.timedelta(days=3)).date(),
        anchor_kind="systemic_cycle",
        anchor_number=1,
    )
    tp.created_at = opens - dt.timedelta(days=1)
    at = opens + dt.timedelta(days=1)
    _fill(session, patient, tp, C30, {f"q{i}": 2 for i in range(1, 31)}, at)
    _fill(session, patient, tp, BN20, {f"q{i}": 1 for i in range(1, 21)}, at)
    session.flush()
    return patient, tp


def test_partial_timepoint_counts_two_received_forms_on_dashboard_and_export(session, visit, now):
    patient, tp = visit
    figures = compliance.compute(session, Patient.id == patient.id, now)
    cells = {g.instrument: figures.form_cell(g, "B") for g in figures.form_groups}
    assert {inst: (c.expected, c.received, c.missed) for inst, c in cells.items()} == {
        C30: (1, 1, 0),
        BN20: (1, 1, 0),
        EQ5D: (1, 0, 1),
    }
    total = compliance.form_totals(figures, "questionnaire", "B")
    assert (total.expected, total.received, total.rate) == (3, 2, pytest.approx(2 / 3))
    # The timepoint view (secondary) still says the visit as a whole is partial.
    timepoint = figures.cell(Group("questionnaire", "after_systemic_cycle", "sys-c1"), "B")
    assert (timepoint.partial, timepoint.completed) == (1, 0)

    trial, rows = _export_forms(session, now)
    assert {(r["instrument"], r["status"], r["received"], r["missing_reason"]) for r in rows} == {
        (C30, "completed", True, None),
        (BN20, "completed", True, None),
        (EQ5D, "missed", False, NOT_RECORDED),
    }
    assert _export_counts(rows, trial.in_range()) == _dashboard_counts(figures)
    long = build.qol_long(trial).table.to_pylist()
    assert {(r["instrument"], r["confirmed"], r["received"]) for r in long} == {
        (C30, True, True),
        (BN20, True, True),
        (EQ5D, None, False),
    }
    # No reason yet: the export says so explicitly, and the nurse's list keeps asking.
    waiting, _n = worklist.missing_reasons(session, Patient.id == patient.id, now)
    assert [row[0].id for row in waiting] == [tp.id]


def test_a_form_with_every_item_skipped_is_not_received(session, factory, now):
    patient = factory.patient().patient
    tp = factory.timepoint(patient, instruments=[EQ5D])
    _fill(session, patient, tp, EQ5D, {}, now)  # every item skipped, then sent
    later = now + dt.timedelta(days=5)  # grace over
    figures = compliance.compute(session, Patient.id == patient.id, later)
    (cell,) = figures.by_form.values()
    assert (cell.expected, cell.completed, cell.received, cell.rate) == (1, 1, 0, 0.0)
    _trial, rows = _export_forms(session, later)
    assert [(r["status"], r["received"]) for r in rows] == [("completed", False)]


def test_saved_unsent_answers_count_as_received_by_the_default_rule(session, factory, now):
    patient = factory.patient().patient
    tp = factory.timepoint(patient, instruments=[EQ5D])
    _fill(session, patient, tp, EQ5D, {"mo": 2}, now, send=False)
    later = now + dt.timedelta(days=5)
    for rule, received in (("any_answer", 1), ("submitted_answer", 0)):
        figures = compliance.compute(session, Patient.id == patient.id, later, received_rule=rule)
        (cell,) = figures.by_form.values()
        assert (cell.expected, cell.partial, cell.received) == (1, 1, received)
        _trial, rows = _export_forms(session, later, received_rule=rule)
        assert [(r["status"], r["received"], r["missing_reason"]) for r in rows] == [
            ("partial", bool(received), NOT_RECORDED)
        ]
    with pytest.raises(ValueError, match="unknown received rule"):
        is_received("completed", 1, "some_rule")


def test_demo_dashboard_and_export_have_the_same_numerators_and_denominators(app, session, now):
    result = app.test_cli_runner().invoke(args=["demo", "--patients", "12"])
    assert result.exit_code == 0, result.output
    figures = compliance.compute(session, true(), now)
    trial, rows = _export_forms(session, now)
    dashboard, export = _dashboard_counts(figures), _export_counts(rows, trial.in_range())
    assert {k: v for k, v in dashboard.items() if v} == {k: v for k, v in export.items() if v}
    assert sum(v for (_g, _a, what), v in export.items() if what == "received") > 0
    for (group, _arm), cell in figures.by_form.items():
        assert cell.received <= cell.expected
        if group.kind == "diary":  # per expected diary day, never per randomized
            assert cell.rate is None or cell.rate <= 1 and cell.rate_randomized is None
    # Every missed or partial form in the export carries a reason code.
    assert all(r["missing_reason"] for r in rows if r["status"] in ("missed", "partial"))


def test_dashboard_page_shows_forms_and_diary_days(app, session, factory, visit, now):
    from tests.factories import isolated_client, login, no_csrf

    patient, _tp = visit
    no_csrf(app)
    nurse = factory.staff("nurse", sites=[patient.site])
    client = isolated_client(app)
    login(client, nurse)
    body = client.get("/staff/").get_data(as_text=True)
    assert "Forms by timepoint and questionnaire" in body
    assert "Symptom diaries, per expected diary day" in body
    assert "Questionnaire timepoints (all forms of a visit)" in body
    assert "2 / 1" not in body  # nothing is ever counted above the patients randomized


def test_a_partial_forms_saved_answers_are_scored_and_flagged_unconfirmed(session, factory, now):
    patient = factory.patient().patient
    tp = factory.timepoint(patient, instruments=[C30])
    # PF2 3 of 5 items (half rule met), RF2 none, QL2 1 of 2: saved, never sent.
    saved = {"q1": 2, "q2": 2, "q3": 3, "q29": 5}
    _fill(session, patient, tp, C30, saved, now, send=False)
    later = now + dt.timedelta(days=5)
    spec = build.ExportSpec(filters=ExportFilters(), as_of=later)
    trial = build.load(Source(session, spec.filters, spec.instruments), spec)
    long = {r["scale"]: r for r in build.qol_long(trial).table.to_pylist()}
    assert long["PF2"]["score"] == pytest.approx((1 - (7 / 3 - 1) / 3) * 100)
    assert (long["PF2"]["status"], long["PF2"]["confirmed"], long["PF2"]["n_items"]) == ("partial", False, 3)
    assert long["QL2"]["score"] == pytest.approx(4 / 6 * 100)
    assert long["RF2"]["score"] is None and long["SUMSC"]["score"] is None
    assert long["PF2"]["missing_reason"] == NOT_RECORDED and long["PF2"]["received"] is True
    items = [r for r in build.items(trial).table.to_pylist() if r["item_status"] == "answered"]
    assert {(r["item"], r["value"], r["status"]) for r in items} == {
        (item, float(value), "partial") for item, value in saved.items()
    }
    # As of before the answers were saved, there is nothing to score.
    early = build.ExportSpec(filters=ExportFilters(), as_of=now - dt.timedelta(minutes=1))
    trial = build.load(Source(session, early.filters, early.instruments), early)
    assert all(r["score"] is None for r in build.qol_long(trial).table.to_pylist())
    # Wide keeps confirmed scores only.
    trial = build.load(Source(session, spec.filters, spec.instruments), spec)
    (wide,) = build.qol_wide(trial).table.to_pylist()
    assert (wide["C30_STATUS"], wide["C30_PF2"]) == ("partial", None)
