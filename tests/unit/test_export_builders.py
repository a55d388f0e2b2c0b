"""Export builders over plain records: as-of statuses, rows of every dataset, FHIR and SDTM QS.

No database: the records are built by hand, as ``builders.source`` would hand them over.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from qol_app.export import checked_rows
from qol_app.export.builders import columns as cols
from qol_app.export.builders.records import (
    AlertFacts,
    EventFacts,
    Form,
    PatientFacts,
    PatientForms,
    ResponseFacts,
    TimepointFacts,
    counts_at,
    form_status,
    not_expected_at,
    patient_status_at,
    timepoint_code,
)
from qol_app.export.builders.standards import qs_export, write_fhir_bundle
from qol_app.export.builders.tables import (
    BuildOptions,
    Catalog,
    alert_rows,
    event_rows,
    form_rows,
    item_rows,
    long_rows,
    patient_rows,
    wide_layout,
    wide_rows,
)
from qol_app.export.dataset import Dataset, check_name
from qol_app.export.sdtm import QS_COLUMNS
from qol_app.instruments import get_registry
from qol_app.scoring import score_detail

UTC = dt.UTC
AS_OF = dt.datetime(2026, 4, 1, tzinfo=UTC)
RAND = dt.date(2026, 1, 10)
C30, BN20, EQ5D = "eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l"
PATIENT = PatientFacts(
    pk=7, study_id="S01-007", site="S01", arm="A", randomization_date=RAND, tz="Asia/Shanghai", language="zh_Hans"
)
REG = get_registry()


def tp(key: str, target: dt.date, *, instruments=(C30, BN20, EQ5D), pk: int | None = None, **kw) -> TimepointFacts:
    opens = dt.datetime.combine(target - dt.timedelta(days=3), dt.time(16), tzinfo=UTC)
    values = {
        "pk": pk or abs(hash(key)) % 10_000,
        "key": key,
        "rule_id": kw.pop("rule_id", key.split("-")[0]),
        "kind": kw.pop("kind", "questionnaire"),
        "instruments": tuple(instruments),
        "anchor_kind": kw.pop("anchor_kind", "systemic_cycle"),
        "anchor_number": kw.pop("anchor_number", 1),
        "anchor_date": kw.pop("anchor_date", target - dt.timedelta(days=21)),
        "target_date": target,
        "window_start": target - dt.timedelta(days=3),
        "window_end": target + dt.timedelta(days=3),
        "opens_at": opens,
        "closes_at": opens + dt.timedelta(days=7),
        "grace_closes_at": opens + dt.timedelta(days=10),
    }
    return TimepointFacts(**(values | kw))


def response(
    at: dt.datetime,
    *,
    pk: int = 1,
    respondent: str = "self",
    relationship: str | None = None,
    submitted: bool = True,
    revision: int = 0,
    version: str = "3.0",
) -> ResponseFacts:
    return ResponseFacts(
        pk, version, revision, "zh_Hans", respondent, relationship, "web", submitted, at, at if submitted else None
    )


def scored(instrument: str, answers: dict) -> dict:
    detail = score_detail(instrument, answers)
    return {k: (v, detail.n_answered[k], detail.scoring_version) for k, v in detail.scores.items()}


def c30(level: int, ql: int) -> dict:
    return {f"q{i}": level for i in range(1, 29)} | {"q29": ql, "q30": ql}


BASE = tp("baseline", RAND, rule_id="baseline", anchor_kind="randomization", anchor_number=None, anchor_date=RAND)
CYCLE1 = tp("sys-c1", RAND + dt.timedelta(days=21))
CYCLE2 = tp("sys-c2", RAND + dt.timedelta(days=42), missed_reason="too_ill")
LATER = tp("fu-1", RAND + dt.timedelta(days=70), not_expected_reason="died")


def sample_forms() -> PatientForms:
    """Baseline complete; cycle 1 worse (C30) and a partial BN20; cycle 2 missed; follow-up not expected."""
    at = dt.datetime(2026, 1, 9, 2, tzinfo=UTC)
    eq = {"mo": 1, "sc": 1, "ua": 2, "pd": 1, "ad": 1, "vas": 80}
    forms = [
        Form(
            BASE,
            C30,
            "completed",
            response(at),
            scored(C30, c30(1, 7)),
            {k: (float(v), False) for k, v in c30(1, 7).items()},
        ),
        Form(BASE, EQ5D, "completed", response(at, pk=2, version="1.0"), scored(EQ5D, eq)),
        Form(
            CYCLE1,
            C30,
            "completed",
            response(
                dt.datetime(2026, 2, 4, 3, tzinfo=UTC),
                pk=3,
                revision=1,
                respondent="proxy",
                relationship="my neighbour Mrs Wang",
            ),
            scored(C30, c30(2, 3)),
            {"q1": (2.0, False), "q2": (None, True)},
        ),
        Form(
            CYCLE1,
            BN20,
            "partial",
            response(dt.datetime(2026, 2, 4, 3, tzinfo=UTC), pk=4, submitted=False, version="1.0"),
            {},
            {"q1": (3.0, False)},
        ),
        Form(
            CYCLE1,
            EQ5D,
            "completed",
            response(dt.datetime(2026, 2, 9, 3, tzinfo=UTC), pk=5, version="1.0"),
            scored(EQ5D, eq | {"mo": 3, "vas": 40}),
        ),
        Form(CYCLE2, C30, "missed"),
        Form(LATER, C30, "not_expected"),
    ]
    return PatientForms(PATIENT, forms)


def rows_as_dicts(columns, rows) -> list[dict]:
    dataset = Dataset("t", {"en": "t", "zh_Hans": "t"}, columns, list(rows))
    return [dict(zip(dataset.names, row)) for row in checked_rows(dataset)]


OPTS = BuildOptions(as_of=AS_OF)
CATALOG = Catalog(REG)


# ---------------------------------------------------------------- as-of rules


def test_form_status_follows_the_clock_at_the_as_of_time() -> None:
    t = tp("sys-c1", dt.date(2026, 3, 1))
    assert form_status(t, t.opens_at - dt.timedelta(seconds=1), submitted=False, started=False) is None
    assert form_status(t, t.opens_at, submitted=False, started=False) == "pending"
    assert form_status(t, t.closes_at, submitted=False, started=True) == "pending"  # grace period
    assert form_status(t, t.grace_closes_at, submitted=False, started=True) == "partial"
    assert form_status(t, t.grace_closes_at, submitted=False, started=False) == "missed"
    assert form_status(t, t.opens_at, submitted=True, started=True) == "completed"
    ended = tp("fu-2", dt.date(2026, 3, 1), not_expected_reason="died")
    assert form_status(ended, ended.opens_at - dt.timedelta(days=9), submitted=False, started=False) == "not_expected"
    assert form_status(ended, ended.grace_closes_at, submitted=True, started=True) == "completed"


def test_later_records_do_not_count_before_they_were_made() -> None:
    made = dt.datetime(2026, 3, 1, tzinfo=UTC)
    assert not_expected_at("died", made, made) == "died"
    assert not_expected_at("died", made, made - dt.timedelta(seconds=1)) is None
    assert counts_at("cancelled", made, made - dt.timedelta(days=5), made) is False
    assert counts_at("cancelled", made, made - dt.timedelta(days=5), made - dt.timedelta(days=1)) is True
    assert counts_at("open", None, made, made - dt.timedelta(days=1)) is False  # created later
    assert patient_status_at("died", dt.date(2026, 3, 2), dt.date(2026, 3, 1)) == ("active", None)
    assert patient_status_at("died", dt.date(2026, 3, 2), dt.date(2026, 3, 2)) == ("died", dt.date(2026, 3, 2))


def test_diary_keys_lose_their_calendar_date_unless_iso_dates() -> None:
    assert timepoint_code("diary-2026-01-19", RAND, iso_dates=False) == "diary-d10"
    assert timepoint_code("diary-2026-01-09", RAND, iso_dates=False) == "diary-d-1"
    assert timepoint_code("diary-2026-01-19", RAND, iso_dates=True) == "diary-2026-01-19"
    assert timepoint_code("sys-c3", RAND, iso_dates=False) == "sys-c3"


# ---------------------------------------------------------------- (a) long


def test_long_file_has_every_scale_of_every_expected_form() -> None:
    rows = rows_as_dicts(cols.LONG_COLUMNS, long_rows([sample_forms()], CATALOG, OPTS))
    n_c30, n_bn20, n_eq = (len(REG.get(i).scales) for i in (C30, BN20, EQ5D))
    assert len(rows) == 4 * n_c30 + n_bn20 + 2 * n_eq
    missed = [r for r in rows if r["timepoint"] == "sys-c2"]
    assert len(missed) == n_c30 and {r["status"] for r in missed} == {"missed"}
    assert {r["missing_reason"] for r in missed} == {"too_ill"} and {r["score"] for r in missed} == {None}
    gone = [r for r in rows if r["timepoint"] == "fu-1"]
    assert {(r["status"], r["missing_reason"]) for r in gone} == {("not_expected", "died")}
    partial = [r for r in rows if r["instrument"] == BN20]
    assert {r["status"] for r in partial} == {"partial"} and {r["score"] for r in partial} == {None}
    first = rows[0]
    assert first["patient_id"] == "S01-007" and first["scale"] == "QL2" and first["score"] == 100.0
    assert [r["scale"] for r in rows[:n_c30]] == [s.code for s in REG.get(C30).scales]


def test_change_and_deterioration_follow_the_scale_direction() -> None:
    rows = {
        (r["timepoint"], r["instrument"], r["scale"]): r
        for r in rows_as_dicts(cols.LONG_COLUMNS, long_rows([sample_forms()], CATALOG, OPTS))
    }
    ql = rows[("sys-c1", C30, "QL2")]  # 100 -> 33.3: worse
    assert ql["baseline_score"] == 100.0 and ql["change"] == pytest.approx(-66.667, abs=1e-3)
    assert ql["deteriorated"] is True
    fatigue = rows[("sys-c1", C30, "FA")]  # symptom 0 -> 33.3: worse
    assert fatigue["change"] == pytest.approx(33.333, abs=1e-3) and fatigue["deteriorated"] is True
    pf = rows[("sys-c1", C30, "PF2")]  # functional 100 -> 66.7: worse
    assert pf["deteriorated"] is True
    index = rows[("sys-c1", EQ5D, "INDEX")]  # not a 0-100 scale: change only
    assert index["change"] < 0 and index["deteriorated"] is None
    vas = rows[("sys-c1", EQ5D, "VAS")]
    assert vas["change"] == -40 and vas["deteriorated"] is True
    base = rows[("baseline", C30, "QL2")]
    assert base["is_baseline"] is True and base["change"] is None and base["deteriorated"] is None
    assert rows[("sys-c2", C30, "QL2")]["baseline_score"] == 100.0  # missed: baseline shown, no change


def test_small_changes_do_not_count_and_the_threshold_is_an_option() -> None:
    forms = sample_forms()
    rows = {
        (r["timepoint"], r["scale"]): r
        for r in rows_as_dicts(
            cols.LONG_COLUMNS, long_rows([forms], Catalog(REG, threshold=70.0), BuildOptions(AS_OF, threshold=70.0))
        )
    }
    assert rows[("sys-c1", "QL2")]["deteriorated"] is False  # 66.7 < 70


def test_study_days_by_default_and_iso_dates_only_when_asked() -> None:
    rows = rows_as_dicts(cols.LONG_COLUMNS, long_rows([sample_forms()], CATALOG, OPTS))
    cycle = next(r for r in rows if r["timepoint"] == "sys-c1" and r["instrument"] == C30)
    assert cycle["target_date"] is None and cycle["completed_at"] is None
    assert cycle["target_day"] == 22 and cycle["completed_day"] == 26 and cycle["days_from_rand"] == 25
    assert cycle["anchor_day"] == 1 and cycle["anchor_kind"] == "systemic_cycle" and cycle["anchor_number"] == 1
    assert cycle["window_status"] == "on_time" and cycle["revision"] == 1 and cycle["respondent"] == "proxy"
    late = next(r for r in rows if r["timepoint"] == "sys-c1" and r["instrument"] == EQ5D)
    assert late["window_status"] == "late"
    iso = rows_as_dicts(cols.LONG_COLUMNS, long_rows([sample_forms()], CATALOG, BuildOptions(AS_OF, iso_dates=True)))
    cycle = next(r for r in iso if r["timepoint"] == "sys-c1" and r["instrument"] == C30)
    assert cycle["target_date"] == dt.date(2026, 1, 31)
    assert cycle["completed_at"] == dt.datetime(2026, 2, 4, 3, tzinfo=UTC)


def test_out_of_range_baseline_still_gives_the_baseline() -> None:
    forms = sample_forms()
    hidden = [
        Form(
            TimepointFacts(
                **{
                    **{f: getattr(f_.timepoint, f) for f in TimepointFacts.__slots__},
                    "in_range": f_.timepoint.key != "baseline",
                }
            ),
            f_.instrument_id,
            f_.status,
            f_.response,
            f_.scores,
            f_.answers,
        )
        for f_ in forms.forms
    ]
    rows = rows_as_dicts(cols.LONG_COLUMNS, long_rows([PatientForms(PATIENT, hidden)], CATALOG, OPTS))
    assert "baseline" not in {r["timepoint"] for r in rows}
    assert next(r for r in rows if r["scale"] == "QL2")["baseline_score"] == 100.0


# ---------------------------------------------------------------- (b) wide, (c) items, (d) forms


def test_wide_names_are_valid_everywhere_and_hold_the_scores() -> None:
    layout = wide_layout(sorted(REG), CATALOG)
    names = [c.name for c in layout.columns]
    assert len({n.lower() for n in names}) == len(names)
    for name in names:
        check_name(name)
    assert {"C30_QL2", "BN20_BNFU", "EQ5D_INDEX", "EQ5D_VAS", "C30_STATUS", "DIARY_WORST"} <= set(names)
    assert names.index("C30_QL2") < names.index("BN20_BNFU") < names.index("EQ5D_INDEX")
    rows = rows_as_dicts(layout.columns, wide_rows([sample_forms()], layout, CATALOG, OPTS))
    assert [r["timepoint"] for r in rows] == ["baseline", "sys-c1", "sys-c2", "fu-1"]
    assert rows[0]["C30_QL2"] == 100.0 and rows[0]["BN20_STATUS"] is None and rows[0]["EQ5D_VAS"] == 80
    assert rows[1]["BN20_STATUS"] == "partial" and rows[1]["BN20_BNFU"] is None
    assert rows[2]["C30_STATUS"] == "missed" and rows[2]["missing_reason"] == "too_ill"
    assert rows[3]["missing_reason"] == "died"


def test_items_have_explicit_skip_codes() -> None:
    rows = rows_as_dicts(cols.ITEM_COLUMNS, item_rows([sample_forms()], CATALOG, OPTS))
    cycle = {r["item"]: r for r in rows if r["timepoint"] == "sys-c1" and r["instrument"] == C30}
    assert len(cycle) == 30
    assert (cycle["q1"]["value"], cycle["q1"]["item_status"]) == (2.0, "answered")
    assert (cycle["q2"]["value"], cycle["q2"]["item_status"]) == (None, "skipped")
    assert (cycle["q3"]["value"], cycle["q3"]["item_status"]) == (None, "not_presented")
    assert cycle["q30"]["item_number"] == 30 and cycle["q1"]["revision"] == 1
    assert not [r for r in rows if r["timepoint"] in ("sys-c2", "fu-1")]  # no response, no items
    assert {r["status"] for r in rows if r["instrument"] == BN20} == {"partial"}


def test_expected_forms_list_status_reason_and_coded_relationship() -> None:
    rows = rows_as_dicts(cols.FORMS_COLUMNS, form_rows([sample_forms()], CATALOG, OPTS))
    assert [(r["timepoint"], r["instrument"], r["status"]) for r in rows] == [
        ("baseline", C30, "completed"),
        ("baseline", EQ5D, "completed"),
        ("sys-c1", C30, "completed"),
        ("sys-c1", BN20, "partial"),
        ("sys-c1", EQ5D, "completed"),
        ("sys-c2", C30, "missed"),
        ("fu-1", C30, "not_expected"),
    ]
    assert rows[5]["missing_reason"] == "too_ill" and rows[6]["missing_reason"] == "died"
    assert rows[2]["respondent_rel"] == "other"  # free text never leaves the app
    assert rows[0]["window_start_day"] == -3 and rows[0]["window_end_day"] == 4
    assert rows[5]["instrument_version"] == "3.0" and rows[5]["respondent"] is None


# ---------------------------------------------------------------- (e) patients, events, (f) alerts


def test_patients_and_events_as_study_days() -> None:
    died = PatientFacts(8, "S01-008", "S01", "B", RAND, "Asia/Shanghai", "en", "died", dt.date(2026, 3, 1))
    events = [
        EventFacts("systemic_cycle", 1, dt.date(2026, 1, 12), 21),
        EventFacts("progression", None, dt.date(2026, 2, 20)),
        EventFacts("progression", None, dt.date(2026, 2, 27)),
        EventFacts("end_of_treatment", None, dt.date(2026, 2, 28)),
    ]
    (row,) = rows_as_dicts(cols.PATIENT_COLUMNS, patient_rows([(died, events)], OPTS))
    assert row["rand_day"] == 1 and row["rand_date"] is None and row["pt_status"] == "died"
    assert (row["death_day"], row["withdrawal_day"], row["first_prog_day"], row["n_prog"]) == (51, None, 42, 2)
    assert (row["eot_day"], row["n_cycles"], row["n_it_doses"], row["status_date"]) == (50, 1, 0, None)
    (iso,) = rows_as_dicts(cols.PATIENT_COLUMNS, patient_rows([(died, events)], BuildOptions(AS_OF, iso_dates=True)))
    assert iso["rand_date"] == RAND and iso["status_date"] == dt.date(2026, 3, 1)
    rows = rows_as_dicts(cols.EVENT_COLUMNS, event_rows([(died, events)], OPTS))
    assert [(r["event"], r["event_day"], r["event_date"]) for r in rows][:2] == [
        ("systemic_cycle", 3, None),
        ("progression", 42, None),
    ]


def test_alerts_have_no_free_text() -> None:
    raised = dt.datetime(2026, 2, 1, 1, tzinfo=UTC)
    alert = AlertFacts(
        PATIENT,
        1,
        "red",
        "amber",
        ("amber_headache",),
        raised,
        True,
        raised + dt.timedelta(hours=5),
        "diary-2026-02-01",
        "symptom_diary",
    )
    (row,) = rows_as_dicts(cols.ALERT_COLUMNS, alert_rows([alert], OPTS))
    assert row["timepoint"] == "diary-d23" and row["raised_day"] == 23 and row["raised_at"] is None
    assert (row["level"], row["initial_level"], row["escalated"], row["acknowledged"]) == ("red", "amber", True, True)
    assert row["ack_hours"] == 5.0 and row["rules"] == "amber_headache"


# ---------------------------------------------------------------- FHIR and SDTM QS


def test_fhir_bundle_validates_and_uses_the_right_author(tmp_path: Path) -> None:
    path = write_fhir_bundle(
        [sample_forms()], tmp_path / "b.json", CATALOG, sorted(REG), OPTS, base_url="https://example.org/fhir"
    )
    data = json.loads(path.read_text(encoding="utf-8"))
    Bundle.model_validate(data)
    kinds = [e["resource"]["resourceType"] for e in data["entry"]]
    assert kinds[: len(REG)] == ["Questionnaire"] * len(REG)
    assert kinds.count("Patient") == 1 and kinds.count("RelatedPerson") == 1
    responses = {
        e["resource"]["id"]: e["resource"]
        for e in data["entry"]
        if e["resource"]["resourceType"] == "QuestionnaireResponse"
    }
    assert len(responses) == 5  # forms with answers: missed and not expected ones have none
    proxy = responses["S01-007-sys-c1-C30"]
    assert proxy["author"]["reference"].startswith("RelatedPerson/")
    assert proxy["status"] == "completed" and "authored" not in proxy  # study days only
    study_day = [x for x in proxy["extension"] if x["url"].endswith("/study-day")]
    assert study_day == [{"url": "https://example.org/fhir/StructureDefinition/study-day", "valueInteger": 26}]
    assert responses["S01-007-sys-c1-BN20"]["status"] == "in-progress"
    assert responses["S01-007-baseline-C30"]["author"] == {"reference": "Patient/S01-007"}
    iso = write_fhir_bundle(
        [sample_forms()],
        tmp_path / "iso.json",
        CATALOG,
        sorted(REG),
        BuildOptions(AS_OF, iso_dates=True),
        base_url="https://example.org/fhir",
    )
    assert '"authored":"2026-02-04T03:00:00Z"' in iso.read_text(encoding="utf-8")


def test_sdtm_qs_columns_and_records() -> None:
    dataset = qs_export([sample_forms()], CATALOG, sorted(REG), OPTS, studyid="CONQUER")
    assert [c.name for c in dataset.columns] == [c.name for c in QS_COLUMNS]
    rows = [dict(zip(dataset.names, r)) for r in checked_rows(dataset)]
    assert {r["STUDYID"] for r in rows} == {"CONQUER"} and {r["DOMAIN"] for r in rows} == {"QS"}
    assert [r["QSSEQ"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["QSDTC"] is None for r in rows)  # no calendar dates by default
    missed = [r for r in rows if r["QSTESTCD"] == "QSALL"]
    assert [(r["VISIT"], r["QSSTAT"], r["QSREASND"]) for r in missed] == [("AFTER CYCLE 2", "NOT DONE", "TOO ILL")]
    skipped = next(r for r in rows if r["VISIT"] == "AFTER CYCLE 1" and r["QSTESTCD"] == "C30Q02")
    assert (skipped["QSSTAT"], skipped["QSREASND"], skipped["QSEVAL"]) == (
        "NOT DONE",
        "SKIPPED BY RESPONDENT",
        "CAREGIVER",
    )
    answered = next(r for r in rows if r["VISIT"] == "BASELINE" and r["QSTESTCD"] == "C30Q01")
    assert (answered["QSORRES"], answered["QSSTRESC"], answered["QSSTRESN"]) == ("Not at all", "1", 1.0)
    assert answered["QSCAT"] == "EORTC QLQ-C30 V3.0" and answered["VISITNUM"] == 1.0 and answered["QSDY"] == -1
    assert all(len(r["QSTESTCD"]) <= 8 and len(r["QSTEST"] or "") <= 40 for r in rows)
    assert all((r["QSTEST"] or "").isascii() and (r["QSORRES"] or "").isascii() for r in rows)
    assert not [r for r in rows if r["VISIT"] == "FOLLOW-UP 1"]  # not expected: no record
    iso = qs_export([sample_forms()], CATALOG, sorted(REG), BuildOptions(AS_OF, iso_dates=True), studyid="CONQUER")
    assert {r[QS_COLUMNS.index(next(c for c in QS_COLUMNS if c.name == "QSDTC"))] for r in iso.rows} >= {
        "2026-01-09T10:00:00"
    }


def test_csv_of_the_long_file_reads_back_with_missing_as_empty(tmp_path: Path) -> None:
    from qol_app.export import write_dataset

    dataset = Dataset(
        "qol_long", {"en": "x", "zh_Hans": "x"}, cols.LONG_COLUMNS, long_rows([sample_forms()], CATALOG, OPTS)
    )
    text = write_dataset("csv", dataset, tmp_path).read_text(encoding="utf-8")
    lines = list(csv.DictReader(io.StringIO(text, newline="")))
    missed = next(r for r in lines if r["status"] == "missed")
    assert (missed["score"], missed["missing_reason"], missed["is_baseline"]) == ("", "too_ill", "0")
