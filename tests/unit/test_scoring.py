"""Scoring against hand-worked examples of CLINICAL.md §4 formulas."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from qol_app.instruments import get_registry
from qol_app.scoring import SCORING_VERSION, n_items_answered, scale_info, score, score_detail

C30_KEYS = ["QL2", "PF2", "RF2", "EF", "CF", "SF", "FA", "NV", "PA", "DY", "SL", "AP", "CO", "DI", "FI", "SUMSC"]
BN20_KEYS = ["BNFU", "BNVD", "BNMD", "BNCD", "BNHA", "BNSE", "BNDR", "BNHL", "BNIS", "BNWL", "BNBC"]
BR23_KEYS = ["BRBI", "BRFU", "BRSEF", "BRSEE", "BRST", "BRHL", "BRAS", "BRBS"]
SUMSC_PARTS = ["PF2", "RF2", "EF", "CF", "SF", "FA", "NV", "PA", "DY", "SL", "AP", "CO", "DI"]

# A full QLQ-C30 worked by hand. Functional S = (1 - (RS-1)/3)*100; symptom
# S = (RS-1)/3*100; QL2 S = (RS-1)/6*100.
FULL_C30 = {
    "q1": 1,
    "q2": 2,
    "q3": 2,
    "q4": 1,
    "q5": 1,  # PF2 RS 7/5=1.4 -> (1-0.4/3)*100 = 260/3
    "q6": 2,
    "q7": 3,  # RF2 RS 2.5 -> (1-1.5/3)*100 = 50
    "q8": 1,  # DY 0
    "q9": 3,
    "q19": 2,  # PA RS 2.5 -> 1.5/3*100 = 50
    "q10": 3,
    "q12": 2,
    "q18": 4,  # FA RS 3 -> 2/3*100 = 200/3
    "q11": 2,  # SL 100/3
    "q13": 3,  # AP 200/3
    "q14": 2,
    "q15": 1,  # NV RS 1.5 -> 50/3
    "q16": 4,  # CO 100
    "q17": 1,  # DI 0
    "q20": 2,
    "q25": 1,  # CF RS 1.5 -> (1-0.5/3)*100 = 250/3
    "q21": 2,
    "q22": 3,
    "q23": 1,
    "q24": 2,  # EF RS 2 -> (1-1/3)*100 = 200/3
    "q26": 2,
    "q27": 2,  # SF RS 2 -> 200/3
    "q28": 3,  # FI 200/3
    "q29": 4,
    "q30": 5,  # QL2 RS 4.5 -> 3.5/6*100 = 175/3
}
# SUMSC = mean of PF2 RF2 EF CF SF and 100-x of FA NV PA DY SL AP CO DI:
# direct 260/3 + 50 + 200/3 + 250/3 + 200/3 = 1060/3
# inverted 100/3 + 250/3 + 50 + 100 + 200/3 + 100/3 + 0 + 100 = 1400/3
# (1060/3 + 1400/3) / 13 = 820/13 = 63.0769...
FULL_C30_EXPECTED = {
    "QL2": 175 / 3,
    "PF2": 260 / 3,
    "RF2": 50.0,
    "EF": 200 / 3,
    "CF": 250 / 3,
    "SF": 200 / 3,
    "FA": 200 / 3,
    "NV": 50 / 3,
    "PA": 50.0,
    "DY": 0.0,
    "SL": 100 / 3,
    "AP": 200 / 3,
    "CO": 100.0,
    "DI": 0.0,
    "FI": 200 / 3,
    "SUMSC": 820 / 13,
}


def test_full_c30_hand_worked() -> None:
    result = score("eortc_qlq_c30", FULL_C30)
    assert list(result) == C30_KEYS
    for code, expected in FULL_C30_EXPECTED.items():
        assert result[code] == pytest.approx(expected, rel=1e-12, abs=1e-12), code


def test_full_precision_is_kept() -> None:
    result = score("eortc_qlq_c30", FULL_C30)
    assert result["SL"] != round(result["SL"] or 0, 2)  # 33.333..., not 33.33


def test_full_bn20_hand_worked() -> None:
    answers = {f"q{i}": 1 for i in range(1, 21)}
    answers.update(q1=2, q2=3, q3=1, q5=4)  # BNFU RS 10/4=2.5 -> 50
    answers.update(q6=2, q7=2, q8=3)  # BNVD RS 7/3 -> (4/3)/3*100 = 400/9
    answers.update(q4=4, q20=2)  # BNHA 100, BNBC 100/3
    result = score("eortc_qlq_bn20", answers)
    assert list(result) == BN20_KEYS
    assert result["BNFU"] == pytest.approx(50.0)
    assert result["BNVD"] == pytest.approx(400 / 9)
    assert result["BNHA"] == pytest.approx(100.0)
    assert result["BNBC"] == pytest.approx(100 / 3)
    assert result["BNMD"] == result["BNCD"] == result["BNSE"] == 0.0


def test_full_br23_hand_worked() -> None:
    answers = {f"q{i}": 2 for i in range(1, 24)}
    result = score("eortc_qlq_br23", answers)
    assert list(result) == BR23_KEYS
    # Functional formula: BRBI, BRFU (1 - 1/3)*100; positively keyed BRSEF/BRSEE and
    # symptom scales: (2-1)/3*100.
    assert result["BRBI"] == result["BRFU"] == pytest.approx(200 / 3)
    for code in ("BRSEF", "BRSEE", "BRST", "BRHL", "BRAS", "BRBS"):
        assert result[code] == pytest.approx(100 / 3), code


def test_all_missing_gives_none_never_zero() -> None:
    for instrument_id in get_registry():
        result = score(instrument_id, {})
        assert all(value is None for value in result.values()), instrument_id
        result = score(instrument_id, {item_id: None for item_id in get_registry().get(instrument_id).item_ids})
        assert all(value is None for value in result.values()), instrument_id


# ------------------------------------------------------------------ half rule

HALF_RULE = [
    # (instrument, scale, its items, answered, scored?)
    ("eortc_qlq_c30", "DY", ["q8"], 1, True),
    ("eortc_qlq_c30", "DY", ["q8"], 0, False),
    ("eortc_qlq_c30", "RF2", ["q6", "q7"], 2, True),
    ("eortc_qlq_c30", "RF2", ["q6", "q7"], 1, True),
    ("eortc_qlq_c30", "RF2", ["q6", "q7"], 0, False),
    ("eortc_qlq_c30", "QL2", ["q29", "q30"], 1, True),
    ("eortc_qlq_c30", "QL2", ["q29", "q30"], 0, False),
    ("eortc_qlq_c30", "FA", ["q10", "q12", "q18"], 3, True),
    ("eortc_qlq_c30", "FA", ["q10", "q12", "q18"], 2, True),
    ("eortc_qlq_c30", "FA", ["q10", "q12", "q18"], 1, False),
    ("eortc_qlq_c30", "EF", ["q21", "q22", "q23", "q24"], 3, True),
    ("eortc_qlq_c30", "EF", ["q21", "q22", "q23", "q24"], 2, True),
    ("eortc_qlq_c30", "EF", ["q21", "q22", "q23", "q24"], 1, False),
    ("eortc_qlq_c30", "PF2", ["q1", "q2", "q3", "q4", "q5"], 4, True),
    ("eortc_qlq_c30", "PF2", ["q1", "q2", "q3", "q4", "q5"], 3, True),
    ("eortc_qlq_c30", "PF2", ["q1", "q2", "q3", "q4", "q5"], 2, False),
    ("eortc_qlq_bn20", "BNFU", ["q1", "q2", "q3", "q5"], 2, True),
    ("eortc_qlq_bn20", "BNFU", ["q1", "q2", "q3", "q5"], 1, False),
    ("eortc_qlq_bn20", "BNVD", ["q6", "q7", "q8"], 2, True),
    ("eortc_qlq_bn20", "BNVD", ["q6", "q7", "q8"], 1, False),
    ("eortc_qlq_br23", "BRST", ["q1", "q2", "q3", "q4", "q6", "q7", "q8"], 4, True),
    ("eortc_qlq_br23", "BRST", ["q1", "q2", "q3", "q4", "q6", "q7", "q8"], 3, False),
]


@pytest.mark.parametrize(("instrument_id", "code", "items", "answered", "scored"), HALF_RULE)
def test_half_rule_boundaries(instrument_id: str, code: str, items: list[str], answered: int, scored: bool) -> None:
    # Answer the *last* items too, so the rule does not depend on which ones.
    for chosen in (items[:answered], items[len(items) - answered :]):
        answers = {item_id: 2 for item_id in chosen}
        result = score(instrument_id, answers)[code]
        if scored:
            assert result is not None
            # Mean of answered items only: all answered 2 -> one step.
            formula = get_registry().get(instrument_id).scale(code).formula
            step = 100 / (6 if code == "QL2" else 3)
            assert result == pytest.approx(100 - step if formula == "functional" else step)
        else:
            assert result is None


def test_half_rule_mean_uses_answered_items_only() -> None:
    # PF2 with q1=1, q2=2, q3=4 answered: RS = 7/3; S = (1 - (4/3)/3)*100 = 500/9.
    assert score("eortc_qlq_c30", {"q1": 1, "q2": 2, "q3": 4})["PF2"] == pytest.approx(500 / 9)


# ------------------------------------------------------------------ SUMSC


def _c30_items(code: str) -> tuple[str, ...]:
    return get_registry().get("eortc_qlq_c30").scale(code).items


@pytest.mark.parametrize("missing", SUMSC_PARTS)
def test_sumsc_missing_when_any_component_is(missing: str) -> None:
    answers: dict[str, Any] = {**FULL_C30, **{item_id: None for item_id in _c30_items(missing)}}
    result = score("eortc_qlq_c30", answers)
    assert result[missing] is None
    assert result["SUMSC"] is None
    assert all(result[code] is not None for code in SUMSC_PARTS if code != missing)


@pytest.mark.parametrize("excluded", ["QL2", "FI"])
def test_sumsc_ignores_ql2_and_fi(excluded: str) -> None:
    answers: dict[str, Any] = {**FULL_C30, **{i: None for i in _c30_items(excluded)}}
    result = score("eortc_qlq_c30", answers)
    assert result[excluded] is None
    assert result["SUMSC"] == pytest.approx(820 / 13)


def test_sumsc_scored_from_half_rule_components() -> None:
    # PF2 with only 3 of 5 items still scores, so SUMSC exists.
    answers: dict[str, Any] = {**FULL_C30, "q4": None, "q5": None}
    result = score("eortc_qlq_c30", answers)
    assert result["PF2"] == pytest.approx((1 - (5 / 3 - 1) / 3) * 100)  # RS 5/3 -> 700/9
    expected = (
        sum(result[c] or 0 for c in ("PF2", "RF2", "EF", "CF", "SF"))
        + sum(100 - (result[c] or 0) for c in SUMSC_PARTS[5:])
    ) / 13
    assert result["SUMSC"] == pytest.approx(expected)


# ------------------------------------------------------------------ BR23 conditionals


def test_brsee_missing_when_not_sexually_active() -> None:
    detail = score_detail("eortc_qlq_br23", {"q14": 1, "q15": 1, "q16": 3})
    assert detail.scores["BRSEE"] is None
    assert "BRSEE" in detail.not_applicable
    assert detail.scores["BRSEF"] == 0.0


@pytest.mark.parametrize("q15", [2, 3, 4, None])
def test_brsee_scored_otherwise(q15: int | None) -> None:
    result = score("eortc_qlq_br23", {"q15": q15, "q16": 3})
    assert result["BRSEE"] == pytest.approx(200 / 3)  # positively keyed: (3-1)/3*100


def test_brhl_missing_without_hair_loss_even_if_answered() -> None:
    detail = score_detail("eortc_qlq_br23", {"q4": 1, "q5": 4})
    assert detail.scores["BRHL"] is None
    assert detail.not_applicable == frozenset({"BRHL"})
    assert detail.n_answered["BRHL"] == 1
    assert score("eortc_qlq_br23", {"q4": 2, "q5": 4})["BRHL"] == 100.0
    assert score("eortc_qlq_br23", {"q5": 4})["BRHL"] == 100.0


def test_brsef_high_is_better() -> None:
    assert score("eortc_qlq_br23", {"q14": 4, "q15": 4})["BRSEF"] == 100.0
    assert score("eortc_qlq_br23", {"q14": 4})["BRSEF"] == 100.0  # 1 of 2 answered


# ------------------------------------------------------------------ EQ-5D-5L


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("11111", 1.000),
        ("11211", 0.955),
        ("21111", 0.934),
        ("55555", -0.391),
        ("12345", 0.335),
        ("33333", 0.363),
    ],
)
def test_eq5d_china_check_values(profile: str, expected: float) -> None:
    answers = dict(zip(("mo", "sc", "ua", "pd", "ad"), map(int, profile)))
    result = score("eq5d5l", answers)
    assert result["INDEX"] is not None
    assert round(result["INDEX"], 3) == expected
    assert result["VAS"] is None


def test_eq5d_index_missing_unless_all_five() -> None:
    result = score("eq5d5l", {"mo": 1, "sc": 1, "ua": 1, "pd": 1, "vas": 80})
    assert result == {"INDEX": None, "VAS": 80.0}


def test_eq5d_vas_reported_as_is() -> None:
    assert score("eq5d5l", {"vas": 0})["VAS"] == 0.0
    assert score("eq5d5l", {"vas": 100})["VAS"] == 100.0


def test_eq5d_value_set_selectable_by_name() -> None:
    answers = {"mo": 2, "sc": 2, "ua": 2, "pd": 2, "ad": 2}
    detail = score_detail("eq5d5l", answers, value_set="CN_2017")
    assert detail.value_set == "CN_2017"
    assert detail.scores["INDEX"] == pytest.approx(1 - (0.066 + 0.048 + 0.045 + 0.058 + 0.049))
    with pytest.raises(ValueError, match="'UK_2099'"):
        score_detail("eq5d5l", answers, value_set="UK_2099")


# ------------------------------------------------------------------ diary


def test_diary_values_and_worst() -> None:
    result = score(
        "symptom_diary",
        {"temperature": 37.6, "headache": 2, "nausea": 1, "vomiting": 3, "seizure": 1, "ommaya_site": 4},
    )
    assert result["temperature"] == 37.6
    assert result["headache"] == 2.0 and result["vomiting"] == 3.0
    assert result["seizure"] == 1.0 and result["ommaya_site"] == 4.0
    assert result["chills"] is None
    assert result["WORST"] == 3.0


def test_diary_worst_none_if_no_severity_item_answered() -> None:
    # Yes/no items and the (nominal) Ommaya site never count towards WORST.
    result = score("symptom_diary", {"seizure": 1, "confusion": 1, "ommaya_site": 4, "temperature": 39.0})
    assert result["WORST"] is None


def test_diary_worst_zero_is_a_value() -> None:
    assert score("symptom_diary", {"headache": 0})["WORST"] == 0.0


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("instrument_id", "answers", "message"),
    [
        ("eortc_qlq_c31", {}, "'eortc_qlq_c31'"),
        ("eortc_qlq_c30", {"q31": 1}, "unknown item id 'q31'"),
        ("eortc_qlq_c30", {"Q1": 1}, "unknown item id 'Q1'"),
        ("eortc_qlq_c30", {"q1": 0}, "'q1': 0 is not one of the codes 1, 2, 3, 4"),
        ("eortc_qlq_c30", {"q1": 5}, "'q1': 5 is not one of"),
        ("eortc_qlq_c30", {"q29": 8}, "'q29': 8 is not one of the codes 1, 2, 3, 4, 5, 6, 7"),
        ("eortc_qlq_c30", {"q1": None, "q2": 9}, "'q2': 9 is not one of the codes"),  # after a skipped item
        ("eortc_qlq_c30", {"q1": None, "q99": 1}, "unknown item id 'q99'"),
        ("eortc_qlq_c30", {"q2": True}, "'q2': True is a bool"),
        ("eortc_qlq_c30", {"q2": 2.0}, "'q2': 2.0 is not an integer code"),
        ("eortc_qlq_c30", {"q2": "2"}, "'q2': '2' is not an integer code"),
        ("eortc_qlq_bn20", {"q21": 1}, "unknown item id 'q21'"),
        ("eq5d5l", {"mo": 6}, "'mo': 6 is not one of"),
        ("eq5d5l", {"vas": 101}, "'vas': 101 is outside 0..100"),
        ("eq5d5l", {"vas": -1}, "'vas': -1 is outside"),
        ("eq5d5l", {"vas": 50.5}, "'vas': 50.5 is not an integer"),
        ("eq5d5l", {"vas": False}, "'vas': False is a bool"),
        ("symptom_diary", {"temperature": 50.0}, "'temperature': 50.0 is outside 34..43"),
        ("symptom_diary", {"temperature": float("nan")}, "'temperature': nan is not a finite"),
        ("symptom_diary", {"temperature": "37"}, "'temperature': '37' is not a finite number"),
        ("symptom_diary", {"headache": 5}, "'headache': 5 is not one of the codes 0, 1, 2, 3, 4"),
        ("symptom_diary", {"seizure": 2}, "'seizure': 2 is not one of the codes 0, 1"),
    ],
)
def test_invalid_input_raises_naming_it(instrument_id: str, answers: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        score(instrument_id, answers)


def test_unsupported_version_raises() -> None:
    with pytest.raises(ValueError, match=r"eortc_qlq_c30: unsupported version '2\.0'"):
        score("eortc_qlq_c30", FULL_C30, version="2.0")
    assert score("eortc_qlq_c30", FULL_C30, version="3.0") == score("eortc_qlq_c30", FULL_C30)


def test_integer_temperature_is_accepted() -> None:
    assert score("symptom_diary", {"temperature": 38})["temperature"] == 38.0


# ------------------------------------------------------------------ info and counts


def test_scale_info_c30() -> None:
    info = scale_info("eortc_qlq_c30")
    assert list(info) == C30_KEYS
    assert (info["PF2"].type, info["PF2"].n_items, info["PF2"].higher_is_better) == ("functional", 5, True)
    assert (info["QL2"].type, info["QL2"].higher_is_better) == ("global", True)
    assert (info["FA"].type, info["FA"].higher_is_better) == ("symptom", False)
    assert (info["DY"].n_items, info["DY"].higher_is_better) == (1, False)
    assert info["SUMSC"].type == "summary" and info["SUMSC"].higher_is_better
    assert info["SUMSC"].n_items == 27  # every item but q28 (FI), q29 and q30 (QL2)
    assert info["EF"].name == {"en": "Emotional functioning", "zh_Hans": "情绪功能"}
    assert (info["PF2"].score_min, info["PF2"].score_max) == (0.0, 100.0)


def test_scale_info_other_instruments() -> None:
    br23 = scale_info("eortc_qlq_br23")
    assert br23["BRSEF"].higher_is_better and br23["BRSEE"].higher_is_better
    assert br23["BRFU"].higher_is_better and not br23["BRST"].higher_is_better
    assert list(scale_info("eortc_qlq_bn20")) == BN20_KEYS
    assert not any(i.higher_is_better for i in scale_info("eortc_qlq_bn20").values())
    eq = scale_info("eq5d5l")
    assert (eq["INDEX"].type, eq["INDEX"].n_items, eq["INDEX"].higher_is_better) == ("index", 5, True)
    assert round(eq["INDEX"].score_min, 3) == -0.391 and eq["INDEX"].score_max == 1.0
    assert (eq["VAS"].type, eq["VAS"].n_items, eq["VAS"].score_max) == ("vas", 1, 100.0)
    diary = scale_info("symptom_diary")
    assert diary["headache"].type == "item" and diary["WORST"].type == "worst"
    assert (diary["WORST"].n_items, diary["WORST"].score_max) == (5, 4.0)
    assert (diary["temperature"].score_min, diary["temperature"].score_max) == (34.0, 43.0)


def test_n_items_answered() -> None:
    counts = n_items_answered("eortc_qlq_c30", {"q1": 1, "q2": None, "q3": 2, "q29": 7})
    assert counts["PF2"] == 2 and counts["QL2"] == 1 and counts["FA"] == 0
    assert counts["SUMSC"] == 2
    assert n_items_answered("eortc_qlq_c30", FULL_C30)["SUMSC"] == 27


def test_score_detail_metadata() -> None:
    detail = score_detail("eortc_qlq_c30", FULL_C30)
    assert (detail.instrument_id, detail.instrument_version) == ("eortc_qlq_c30", "3.0")
    assert detail.scoring_version == SCORING_VERSION
    assert detail.value_set is None
    assert detail.scores == score("eortc_qlq_c30", FULL_C30)
    assert SCORING_VERSION.count(".") == 2


# ---- mutation-testing survivors (make mutate) --------------------------------------------------
def test_the_half_rule_needs_at_least_one_answer():
    """An empty scale is never scored, even though 0 of 0 is 'at least half'."""
    from qol_app.scoring.eortc import half_rule

    assert not half_rule(0, 0)
    assert half_rule(1, 1) and half_rule(1, 2) and not half_rule(1, 3) and half_rule(2, 3)


def test_n_items_answered_uses_the_registry_it_is_given(site_c30_registry):
    """A site's registry (here a renamed copy of the C30) is the one counted, not the shipped one."""
    answers = {"q1": 1, "q2": 2}
    assert n_items_answered("site_c30", answers, registry=site_c30_registry) == n_items_answered(
        "eortc_qlq_c30", answers
    )


def test_scale_info_names_each_scales_items_and_the_summary_components() -> None:
    info = scale_info("eortc_qlq_c30")
    assert all(code == scale.code for code, scale in info.items())
    assert info["PF2"].items == ("q1", "q2", "q3", "q4", "q5") and info["PF2"].components == ()
    sumsc = info["SUMSC"]
    assert sumsc.components == ("PF2", "RF2", "EF", "CF", "SF")
    assert sumsc.inverted_components == ("FA", "NV", "PA", "DY", "SL", "AP", "CO", "DI")
    assert (sumsc.score_min, sumsc.score_max) == (0.0, 100.0)  # a mean of 0-100 scores, not item codes
    assert len(sumsc.items) == sumsc.n_items == 27


def _site_eq5d_registry(folder):
    """``site_eq5d``: the EQ-5D-5L with its VAS listed before the index, scored with ``SITE_2026``,
    a copy of the China value set made for it."""
    from qol_app.instruments import DEFAULT_DIRECTORY, load_registry

    vas = "  - {code: VAS, type: vas, items: [vas], name: {en: EQ VAS, zh_Hans: EQ VAS 自评健康分}}\n"
    text = (DEFAULT_DIRECTORY / "eq5d5l.yaml").read_text(encoding="utf-8")
    assert vas in text
    text = text.replace(vas, "").replace("scales:\n", "scales:\n" + vas).replace("id: eq5d5l", "id: site_eq5d", 1)
    (folder / "site_eq5d.yaml").write_text(text.replace("value_set: CN_2017", "value_set: SITE_2026"), "utf-8")
    value_set = (DEFAULT_DIRECTORY / "value_sets" / "eq5d5l_cn_2017.yaml").read_text(encoding="utf-8")
    (folder / "value_sets").mkdir()
    (folder / "value_sets" / "site_2026.yaml").write_text(
        value_set.replace("name: CN_2017", "name: SITE_2026").replace("instrument: eq5d5l", "instrument: site_eq5d"),
        "utf-8",
    )
    return load_registry(DEFAULT_DIRECTORY, folder)


def test_the_eq5d_index_does_not_depend_on_the_order_of_the_scales(tmp_path) -> None:
    registry = _site_eq5d_registry(tmp_path)
    assert [scale.code for scale in registry.get("site_eq5d").scales] == ["VAS", "INDEX"]
    answers = {"mo": 1, "sc": 1, "ua": 2, "pd": 1, "ad": 1, "vas": 70}
    detail = score_detail("site_eq5d", answers, registry=registry)
    assert detail.scores == {"VAS": 70.0, "INDEX": 0.955} and detail.value_set == "SITE_2026"


def test_a_value_set_made_for_another_instrument_is_refused(tmp_path) -> None:
    registry = _site_eq5d_registry(tmp_path)
    answers = {"mo": 1, "sc": 1, "ua": 2, "pd": 1, "ad": 1, "vas": 70}
    with pytest.raises(ValueError, match="^value set 'SITE_2026' does not apply to eq5d5l$"):
        score_detail("eq5d5l", answers, value_set="SITE_2026", registry=registry)


def test_a_value_set_constant_is_subtracted_once_unless_the_profile_is_full_health() -> None:
    """Value sets such as the EQ-5D-3L UK tariff subtract a constant for any problem at all."""
    from fractions import Fraction

    from qol_app.scoring.eq5d import eq5d_index

    cn = get_registry().value_set("CN_2017")
    with_constant = replace(cn, name="TEST_CONSTANT", constant=0.05)
    full_health = dict.fromkeys(cn.dimensions, 1)
    assert eq5d_index(full_health, with_constant) == 1
    assert eq5d_index(full_health | {"mo": 2}, with_constant) == Fraction("0.884")  # 1 - 0.066 - 0.05
    assert eq5d_index(full_health | {"mo": 2, "sc": 3}, with_constant) == Fraction("0.768")  # - 0.116 too
