"""The as-of rules and the one builder over hand-made stored rows (no database): a fake source
hands ``build.load`` the rows ``source.Source`` would read."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from qol_app.export import asof, build
from qol_app.export.asof import PatientRow, ResponseRow, TimepointRow
from qol_app.export.build import ExportSpec
from qol_app.export.source import ANSWER_SCHEMA, SCORE_SCHEMA, ExportFilters
from qol_app.instruments import get_registry
from qol_app.scoring import score_detail

UTC = dt.UTC
RAND = dt.date(2026, 1, 10)
AS_OF = dt.datetime(2026, 4, 1, tzinfo=UTC)
C30, EQ5D = "eortc_qlq_c30", "eq5d5l"
REG = get_registry()
CREATED = dt.datetime(2025, 12, 1, tzinfo=UTC)


def tp(pk: int, key: str, target: dt.date, **kw) -> TimepointRow:
    opens = dt.datetime.combine(target - dt.timedelta(days=3), dt.time(16), tzinfo=UTC)
    values = dict(
        pk=pk,
        patient_pk=1,
        key=key,
        rule_id=key.split("-")[0],
        kind="questionnaire",
        instruments=(C30, EQ5D),
        anchor_kind="systemic_cycle",
        anchor_number=1,
        anchor_date=target - dt.timedelta(days=21),
        target_date=target,
        window_start=target - dt.timedelta(days=3),
        window_end=target + dt.timedelta(days=3),
        opens_at=opens,
        closes_at=opens + dt.timedelta(days=7),
        grace_closes_at=opens + dt.timedelta(days=10),
        missed_reason=None,
        not_expected_reason=None,
        status="open",
        status_changed_at=None,
        created_at=CREATED,
    )
    return TimepointRow(**(values | kw))


def response(pk, tp_pk, inst, at, *, revision=0, submitted=True, respondent="self", relationship=None, by=None):
    version = REG.get(inst).version
    status = "submitted" if submitted else "in_progress"
    return ResponseRow(pk, tp_pk, inst, version, revision, "zh_Hans", respondent, relationship, "web", status, at,
                       at if submitted else None, by)  # fmt: skip


def c30(level: int, ql: int) -> dict:
    return {f"q{i}": level for i in range(1, 29)} | {"q29": ql, "q30": ql}


def _kept(table, keep):
    """Source's ``keep``: only the rows of the given responses."""
    return table if keep is None else table.filter(pc.is_in(table["response_id"], value_set=keep))


class FakeSource:
    """The stored rows of one patient: baseline, cycle 1 (proxy, then corrected), cycle 2 missed."""

    def __init__(self) -> None:
        base_at = dt.datetime(2026, 1, 9, 2, tzinfo=UTC)
        c1_at = dt.datetime(2026, 2, 1, 3, tzinfo=UTC)
        fix_at = dt.datetime(2026, 3, 1, tzinfo=UTC)
        self.tps = [
            tp(1, "baseline", RAND, anchor_kind="randomization", anchor_number=None, status="completed"),
            tp(2, "sys-c1", RAND + dt.timedelta(days=21)),
            tp(3, "sys-c2", RAND + dt.timedelta(days=42), missed_reason="too_ill", status="missed"),
            tp(4, "sys-c9", RAND + dt.timedelta(days=30), status="cancelled", status_changed_at=base_at),
            tp(
                5,
                "fu-1",
                RAND + dt.timedelta(days=70),
                not_expected_reason="died",
                status="not_expected",
                status_changed_at=dt.datetime(2026, 3, 20, tzinfo=UTC),
            ),  # fmt: skip
        ]
        self.resps = [
            response(10, 1, C30, base_at),
            response(11, 1, EQ5D, base_at),
            response(12, 2, C30, c1_at, respondent="proxy", relationship="my neighbour Mrs Wang"),
            response(13, 2, C30, fix_at, revision=1, respondent="proxy", relationship="my neighbour Mrs Wang", by=7),
        ]
        answers = {10: c30(1, 7), 11: {"mo": 1, "sc": 1, "ua": 2, "pd": 1, "ad": 1, "vas": 80}}
        answers |= {12: c30(2, 3) | {"q2": None}, 13: c30(2, 3) | {"q2": None, "q30": 1}}
        self._scores = []
        self._answers = []
        for pk, given in answers.items():
            inst = EQ5D if pk == 11 else C30
            detail = score_detail(inst, given)
            for scale, value in detail.scores.items():
                self._scores.append((pk, scale, value, detail.n_answered[scale], detail.scoring_version))
            for item, value in given.items():
                self._answers.append((pk, item, None if value is None else float(value), value is None))

    def patients(self):
        return [PatientRow(1, "S01-007", "S01", "A", RAND, "Asia/Shanghai", "zh_Hans", "died",
                           dt.date(2026, 3, 19), CREATED)]  # fmt: skip

    def timepoints(self):
        return {1: self.tps}

    def responses(self):
        out: dict = {}
        for r in self.resps:
            out.setdefault((r.timepoint_pk, r.instrument_id), []).append(r)
        return out

    def scores(self, keep=None):
        return _kept(pa.table(list(zip(*self._scores)), schema=SCORE_SCHEMA), keep)

    def answers(self, keep=None):
        return _kept(pa.table(list(zip(*self._answers)), schema=ANSWER_SCHEMA), keep)

    def answer_times(self, pks):
        return {}

    def status_history(self):
        return {}

    def timepoint_history(self):
        return {}

    def answer_summary(self):
        out: dict = {}
        for pk, _item, _value, skipped in self._answers:
            if not skipped:
                n, _first = out.get(pk, (0, None))
                out[pk] = (n + 1, CREATED)
        return out

    def events(self):
        return {}

    def event_history(self):
        return {}

    def patient_history(self):
        return {}

    def alerts(self):
        return {}


def load(as_of=AS_OF, **kw):
    spec = ExportSpec(
        filters=kw.pop("filters", ExportFilters(instruments=(C30, EQ5D))), as_of=as_of, registry=REG, **kw
    )
    return build.load(FakeSource(), spec)  # type: ignore[arg-type]


def test_as_of_rules_pick_what_was_known_then():
    early = load(dt.datetime(2026, 2, 20, tzinfo=UTC))
    statuses = {(f.timepoint.key, f.instrument_id): f.status for f in early.forms}
    assert statuses[("sys-c1", C30)] == "completed" and early.forms[2].response.revision == 0
    assert statuses[("sys-c1", EQ5D)] == "missed" and ("sys-c9", C30) not in statuses  # cancelled by then
    assert early.patients[0].status == "active"  # the death is dated later
    late = load()
    c1 = next(f for f in late.forms if f.timepoint.key == "sys-c1" and f.instrument_id == C30)
    assert c1.response.revision == 1 and c1.response.first_submitted_at == dt.datetime(2026, 2, 1, 3, tzinfo=UTC)
    assert [c.entered_by for c in c1.response.corrections] == [7]
    assert {(f.timepoint.key, f.status, f.missing_reason) for f in late.forms if f.timepoint.key == "fu-1"} == {
        ("fu-1", "not_expected", "died")
    }
    assert asof.counts_at("cancelled", AS_OF + dt.timedelta(days=1), CREATED, AS_OF)  # cancelled later: counts
    assert asof.not_expected_at("died", AS_OF + dt.timedelta(days=1), AS_OF) is None
    assert asof.patient_status_at("died", dt.date(2026, 5, 1), AS_OF.date()) == ("active", None)


def test_a_timepoint_moved_later_keeps_its_dates_order_and_range_of_the_as_of_time():
    """Rewound through the values later changes replaced: dates, order, the date filter, cancellation."""
    moved_at = AS_OF + dt.timedelta(days=2)
    a = tp(1, "sys-c1", dt.date(2026, 2, 20))  # moved later to 10 March
    b = tp(2, "sys-c2", dt.date(2026, 3, 1))
    c = tp(3, "sys-c3", dt.date(2026, 3, 5), status="scheduled")  # cancelled then, reactivated later
    old_a = dt.date(2026, 2, 5)
    history = {
        1: [
            asof.ChangeRow(AS_OF - dt.timedelta(days=9), "target_date", a.target_date, old_a),
            asof.ChangeRow(moved_at, "target_date", dt.date(2026, 3, 10), a.target_date),
            asof.ChangeRow(moved_at + dt.timedelta(days=1), "target_date", dt.date(2026, 3, 12), dt.date(2026, 3, 10)),
        ],
        3: [
            asof.ChangeRow(AS_OF - dt.timedelta(days=1), "status", "cancelled", "scheduled"),
            asof.ChangeRow(moved_at, "status", "scheduled", "cancelled"),
        ],
    }
    a = dataclasses.replace(a, target_date=dt.date(2026, 3, 12))
    rows = [b, c, a]  # the stored order (by today's target date)
    everything = asof.timepoints_at(rows, AS_OF, history, lambda day: True)
    assert [(t.key, t.target_date) for t in everything] == [("sys-c1", dt.date(2026, 2, 20)), ("sys-c2", b.target_date)]
    february = asof.timepoints_at(rows, AS_OF, history, lambda day: day.month == 2)
    assert [t.key for t in february] == ["sys-c1"]
    later = asof.timepoints_at(rows, moved_at + dt.timedelta(days=1), history, lambda day: True)
    assert [(t.key, t.target_date) for t in later] == [
        ("sys-c2", b.target_date),
        ("sys-c3", c.target_date),
        ("sys-c1", dt.date(2026, 3, 12)),
    ]


def test_long_file_has_every_scale_and_direction_aware_change():
    rows = build.qol_long(load()).table.to_pylist()
    per_form = {}
    for row in rows:
        per_form.setdefault((row["timepoint"], row["instrument"]), []).append(row)
    assert len(per_form[("sys-c2", C30)]) == len(REG.get(C30).scales)  # missed: every scale, no score
    assert {r["score"] for r in per_form[("sys-c2", C30)]} == {None}
    assert {r["missing_reason"] for r in per_form[("sys-c2", C30)]} == {"too_ill"}
    ql = next(r for r in per_form[("sys-c1", C30)] if r["scale"] == "QL2")
    assert ql["baseline_score"] == 100.0 and ql["score"] == pytest.approx(100 / 6)  # q29 = 3, q30 corrected to 1
    assert ql["change"] == ql["score"] - 100.0 and ql["deteriorated"] is True
    fa = next(r for r in per_form[("sys-c1", C30)] if r["scale"] == "FA")
    assert fa["change"] > 0 and fa["deteriorated"] is True  # more fatigue is worse
    pf = next(r for r in per_form[("sys-c1", C30)] if r["scale"] == "PF2")
    assert pf["n_items"] == 4 and pf["revision"] == 1  # item 2 skipped in the current revision
    base = [r for r in rows if r["is_baseline"]]
    assert base and {r["change"] for r in base} == {None}
    assert ql["target_day"] == 22 and ql["target_date"] is None and ql["timepoint"] == "sys-c1"
    assert ql["respondent"] == "proxy" and ql["window_status"] == "on_time"


def test_baseline_outside_the_date_range_still_gives_the_baseline_and_iso_dates_on_request():
    trial = load(filters=ExportFilters(instruments=(C30,), date_from=RAND + dt.timedelta(days=10)), iso_dates=True)
    rows = build.qol_long(trial).table.to_pylist()
    assert {r["timepoint"] for r in rows} == {"sys-c1", "sys-c2", "fu-1"}
    ql = next(r for r in rows if r["timepoint"] == "sys-c1" and r["scale"] == "QL2")
    assert ql["baseline_score"] == 100.0 and ql["target_date"] == RAND + dt.timedelta(days=21)


def test_items_forms_and_wide():
    trial = load()
    items = build.items(trial, build.item_rows(trial)).table.to_pylist()
    c1 = {r["item"]: r for r in items if r["timepoint"] == "sys-c1" and r["instrument"] == C30}
    assert c1["q2"]["item_status"] == "skipped" and c1["q2"]["value"] is None
    assert c1["q30"]["value"] == 1.0 and c1["q30"]["revision"] == 1
    assert len(c1) == 30
    forms = build.forms(trial).table.to_pylist()
    proxy = next(r for r in forms if r["timepoint"] == "sys-c1" and r["instrument"] == C30)
    assert proxy["respondent_rel"] == "other"  # free text never leaves the app
    wide = build.qol_wide(trial)
    names = [c.xpt for c in wide.columns]
    assert len(set(names)) == len(names) and all(len(n) <= 8 for n in names)
    row = next(r for r in wide.table.to_pylist() if r["timepoint"] == "sys-c1")
    assert (
        row["C30_QL2"] == pytest.approx(100 / 6) and row["C30_STATUS"] == "completed" and row["EQ5D_STATUS"] == "missed"
    )


@pytest.mark.parametrize("name", list(build.DATASETS))
def test_every_dataset_builds_with_unique_xpt_names(name):
    trial = load()
    dataset = build.items(trial, build.item_rows(trial)) if name == "items" else build.DATASETS[name](trial)
    assert len({c.xpt for c in dataset.columns}) == len(dataset.columns)


@pytest.mark.parametrize(
    "keys",
    [
        [7, 3, 3, 0, 7, 12, 3],  # counted
        [5, build.DENSE_KEYS + 9, 5, 2, build.DENSE_KEYS + 9],  # past the counted range: sorted
        [],
    ],
)
def test_distinct_keys_is_np_unique(keys: list[int]) -> None:
    array = np.array(keys, np.int64)
    unique, inverse = build.distinct_keys(array)
    expected_unique, expected_inverse = np.unique(array, return_inverse=True)
    assert unique.tolist() == expected_unique.tolist() and unique.dtype == np.int64
    assert inverse.tolist() == expected_inverse.tolist()


class PartialSource(FakeSource):
    """FakeSource with an EQ-5D-5L form at cycle 1 begun (every item saved) but never sent."""

    def __init__(self) -> None:
        super().__init__()
        self.saved_at = dt.datetime(2026, 2, 1, 4, tzinfo=UTC)
        self.resps.append(response(14, 2, EQ5D, self.saved_at, submitted=False))
        given = {"mo": 3, "sc": 2, "ua": 2, "pd": 4, "ad": 1, "vas": 35}
        self._answers += [(14, item, float(value), False) for item, value in given.items()]

    def answers_of(self, pks):
        pks = set(pks)
        out: dict = {}
        for pk, item, value, skipped in self._answers:
            if pk in pks:
                out.setdefault(pk, []).append((item, value, skipped, self.saved_at))
        return out


def test_a_partial_form_is_scored_unconfirmed_in_the_long_file_and_left_out_of_the_wide_one():
    spec = ExportSpec(filters=ExportFilters(instruments=(C30, EQ5D)), as_of=AS_OF, registry=REG)
    trial = build.load(PartialSource(), spec)  # type: ignore[arg-type]
    long = [
        r for r in build.qol_long(trial).table.to_pylist() if r["timepoint"] == "sys-c1" and r["instrument"] == EQ5D
    ]
    assert {r["status"] for r in long} == {"partial"}
    vas = next(r for r in long if r["scale"] == "VAS")
    assert vas["score"] == 35.0 and vas["confirmed"] is False
    row = next(r for r in build.qol_wide(trial).table.to_pylist() if r["timepoint"] == "sys-c1")
    assert row["EQ5D_STATUS"] == "partial" and row["C30_STATUS"] == "completed"
    assert all(row[name] is None for name in row if name.startswith("EQ5D_") and name != "EQ5D_STATUS")
    assert row["C30_QL2"] == pytest.approx(100 / 6)  # the sent form's scores beside it
    items = build.items(trial, build.item_rows(trial)).table.to_pylist()
    saved = {r["item"]: r["value"] for r in items if r["timepoint"] == "sys-c1" and r["instrument"] == EQ5D}
    assert saved == {"mo": 3.0, "sc": 2.0, "ua": 2.0, "pd": 4.0, "ad": 1.0, "vas": 35.0}  # unsent answers are data
    sent = [r for r in items if r["timepoint"] == "sys-c1" and r["instrument"] == C30]
    assert len(sent) == 30 and {r["revision"] for r in sent} == {1}  # a sent form's answers kept beside them
    assert sum(r["item_status"] == "answered" for r in sent) == 29 and {r["value"] for r in sent} == {
        2.0,
        3.0,
        1.0,
        None,
    }
