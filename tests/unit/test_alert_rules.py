"""Alert rules against CLINICAL.md §5: one table row per clause, plus boundaries.

The hypothesis test compares the YAML rules with an independent hand-written
reading of §5, so a drifted threshold in the data file cannot pass unnoticed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from qol_app.alerts import (
    AlertRuleSet,
    default_rules_path,
    escalation_due_at,
    evaluate,
    load_alert_rules,
    needs_escalation,
)
from qol_app.datafile import DataFileError

# fmt: off
DIARY_ITEMS = frozenset({
    "temperature", "headache", "neck_stiffness", "nausea", "vomiting", "back_pain", "confusion",
    "seizure", "new_weakness", "bladder_bowel", "vision", "ommaya_site", "chills",
})
# fmt: on
SEVERITY_ITEMS = ("headache", "nausea", "back_pain", "vision")
BINARY_ITEMS = ("neck_stiffness", "confusion", "seizure", "new_weakness", "bladder_bowel", "chills")
NONE, PAIN, REDNESS, SWELLING, LEAK = 0, 1, 2, 3, 4  # ommaya_site codes


@pytest.fixture
def rules() -> AlertRuleSet:
    # Loaded by each test (a few milliseconds), so every evaluation test also checks the loader:
    # mutation testing (docs/mutation.md) runs a loader mutant only against the tests that called it.
    return load_alert_rules(default_rules_path(), set(DIARY_ITEMS))


def diary(**answers: float | None) -> dict[str, float | None]:
    """A fully skipped diary with ``answers`` filled in."""
    assert set(answers) <= DIARY_ITEMS, set(answers) - DIARY_ITEMS
    return {item: None for item in DIARY_ITEMS} | answers


# --------------------------------------------------------------------- evaluation


def case(case_id: str, level: str | None, rule_ids: str, **answers: float | None) -> Any:
    """One table row: the diary answers, the expected level and the exact rules that fire."""
    return pytest.param(diary(**answers), level, set(rule_ids.split()), id=case_id)


ALL_ZERO = {i: 0 for i in DIARY_ITEMS - {"temperature"}}
HEADACHE_RED = "red_headache_meningism amber_headache"
OMMAYA_RED = "red_ommaya_infection amber_ommaya_site amber_temperature"

# fmt: off
CASES = [
    # no alert
    case("all-skipped", None, ""),
    pytest.param({}, None, set(), id="empty-mapping"),
    case("all-zero-normal-temp", None, "", **ALL_ZERO, temperature=36.8),
    case("all-moderate", None, "", headache=2, nausea=2, back_pain=2, vision=2, vomiting=2),
    case("chills-alone", None, "", chills=1),
    case("neck-stiffness-alone", None, "", neck_stiffness=1),
    case("ommaya-none", None, "", ommaya_site=NONE),
    case("ommaya-pain", None, "", ommaya_site=PAIN),
    # red: one row per clause
    case("seizure", "red", "red_seizure", seizure=1),
    case("no-seizure", None, "", seizure=0),
    case("confusion", "red", "red_confusion", confusion=1),
    case("new-weakness", "red", "red_neuro_deficit", new_weakness=1),
    case("bladder-bowel", "red", "red_neuro_deficit", bladder_bowel=1),
    case("ommaya-leak", "red", "red_ommaya_leak", ommaya_site=LEAK),
    # temperature boundaries
    case("temp-37.4", None, "", temperature=37.4),
    case("temp-37.5", "amber", "amber_temperature", temperature=37.5),
    case("temp-37.9", "amber", "amber_temperature", temperature=37.9),
    case("temp-37.99", "amber", "amber_temperature", temperature=37.99),
    case("temp-38.0", "red", "red_fever", temperature=38.0),
    case("temp-int-38", "red", "red_fever", temperature=38),
    case("temp-39.4", "red", "red_fever", temperature=39.4),
    # headache 2 vs 3, with and without companions
    case("headache-2+neck", None, "", headache=2, neck_stiffness=1),
    case("headache-2+vomit-4", "amber", "amber_vomiting", headache=2, vomiting=4),
    case("headache-2+temp-37.5", "amber", "amber_temperature", headache=2, temperature=37.5),
    case("headache-3-alone", "amber", "amber_headache", headache=3),
    case("headache-4-alone", "amber", "amber_headache", headache=4),
    case("headache-3+neck", "red", HEADACHE_RED, headache=3, neck_stiffness=1),
    case("headache-3+no-neck", "amber", "amber_headache", headache=3, neck_stiffness=0),
    case("headache-4+vomit-3", "red", f"{HEADACHE_RED} amber_vomiting", headache=4, vomiting=3),
    case("headache-3+vomit-2", "amber", "amber_headache", headache=3, vomiting=2),
    case("headache-3+temp-37.5", "red", f"{HEADACHE_RED} amber_temperature", headache=3, temperature=37.5),
    case("headache-3+temp-37.4", "amber", "amber_headache", headache=3, temperature=37.4),
    case("headache-3+temp-38", "red", f"red_fever {HEADACHE_RED}", headache=3, temperature=38.0),
    # Ommaya site with and without fever
    case("ommaya-redness", "amber", "amber_ommaya_site", ommaya_site=REDNESS),
    case("ommaya-swelling", "amber", "amber_ommaya_site", ommaya_site=SWELLING),
    case("ommaya-redness+temp-37.5", "red", OMMAYA_RED, ommaya_site=REDNESS, temperature=37.5),
    case("ommaya-swelling+temp-37.9", "red", OMMAYA_RED, ommaya_site=SWELLING, temperature=37.9),
    case("ommaya-swelling+temp-37.4", "amber", "amber_ommaya_site", ommaya_site=SWELLING, temperature=37.4),
    case("ommaya-pain+temp-37.5", "amber", "amber_temperature", ommaya_site=PAIN, temperature=37.5),
    case("ommaya-leak+temp-38", "red", "red_ommaya_leak red_fever", ommaya_site=LEAK, temperature=38.0),
    # amber: each severity/frequency item at its threshold
    case("nausea-3", "amber", "amber_nausea", nausea=3),
    case("vomiting-3", "amber", "amber_vomiting", vomiting=3),
    case("vomiting-4", "amber", "amber_vomiting", vomiting=4),
    case("back-pain-3", "amber", "amber_back_pain", back_pain=3),
    case("vision-4", "amber", "amber_vision", vision=4),
    # several at once: red wins, every fired rule is listed
    case("many-red-wins", "red",
         "red_seizure red_confusion red_headache_meningism amber_headache amber_nausea amber_temperature",
         seizure=1, confusion=1, headache=4, neck_stiffness=1, nausea=3, temperature=37.6),
    case("many-amber", "amber", "amber_nausea amber_back_pain amber_ommaya_site",
         nausea=4, back_pain=3, ommaya_site=REDNESS),
]
# fmt: on


@pytest.mark.parametrize(("answers", "level", "rule_ids"), CASES)
def test_evaluate_table(
    rules: AlertRuleSet, answers: dict[str, float | None], level: str | None, rule_ids: set[str]
) -> None:
    result = evaluate(rules, answers)
    assert result.level == level
    assert set(result.rule_ids) == rule_ids
    assert len(result.rule_ids) == len(rule_ids)


def test_red_listed_before_amber_in_file_order(rules: AlertRuleSet) -> None:
    result = evaluate(rules, diary(nausea=3, seizure=1, back_pain=4, confusion=1))
    assert result.rule_ids == ("red_seizure", "red_confusion", "amber_nausea", "amber_back_pain")


def test_triggering_answers_only_name_what_fired(rules: AlertRuleSet) -> None:
    result = evaluate(rules, diary(headache=3, neck_stiffness=1, vomiting=1, nausea=0, temperature=36.9))
    meningism = next(t for t in result.triggered if t.rule_id == "red_headache_meningism")
    assert dict(meningism.answers) == {"headache": 3, "neck_stiffness": 1}
    assert dict(result.answers) == {"headache": 3, "neck_stiffness": 1}
    assert result.rules_version == rules.version


def test_any_records_every_satisfied_branch(rules: AlertRuleSet) -> None:
    result = evaluate(rules, diary(headache=4, neck_stiffness=1, vomiting=3, temperature=37.5))
    meningism = next(t for t in result.triggered if t.rule_id == "red_headache_meningism")
    assert dict(meningism.answers) == {"headache": 4, "neck_stiffness": 1, "vomiting": 3, "temperature": 37.5}


def test_triggered_rules_carry_both_locales(rules: AlertRuleSet) -> None:
    result = evaluate(rules, diary(seizure=1))
    (fired,) = result.triggered
    assert fired.description("en") == "Seizure"
    assert fired.description("zh_Hans") == "癫痫发作"
    with pytest.raises(KeyError):
        fired.description("fr")


def test_result_is_read_only(rules: AlertRuleSet) -> None:
    result = evaluate(rules, diary(seizure=1))
    with pytest.raises(TypeError):
        result.answers["seizure"] = 0  # type: ignore[index]


@pytest.mark.parametrize(
    ("value", "error"),
    [("1", TypeError), (True, TypeError), (float("nan"), ValueError), (float("inf"), ValueError)],
)
def test_non_numeric_answers_are_refused(rules: AlertRuleSet, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="seizure"):
        evaluate(rules, diary(seizure=value))


def test_items_no_rule_reads_are_not_checked(rules: AlertRuleSet) -> None:
    answers: dict[str, Any] = {"free_text": "feeling ok", "seizure": 0}
    assert evaluate(rules, answers).level is None


def _reference_level(a: dict[str, float | None]) -> str | None:
    """CLINICAL.md §5 written out by hand, independently of the YAML."""

    def at_least(item: str, threshold: float) -> bool:
        v = a.get(item)
        return v is not None and v >= threshold

    def yes(item: str) -> bool:
        return a.get(item) == 1

    temp = a.get("temperature")
    site = a.get("ommaya_site")
    red = (
        yes("seizure")
        or yes("confusion")
        or at_least("temperature", 38.0)
        or (
            at_least("headache", 3)
            and (yes("neck_stiffness") or at_least("vomiting", 3) or at_least("temperature", 37.5))
        )
        or yes("new_weakness")
        or yes("bladder_bowel")
        or site == LEAK
        or (site in (REDNESS, SWELLING) and at_least("temperature", 37.5))
    )
    amber = (
        any(at_least(i, 3) for i in (*SEVERITY_ITEMS, "vomiting"))
        or (temp is not None and 37.5 <= temp < 38.0)
        or site in (REDNESS, SWELLING)
    )
    return "red" if red else "amber" if amber else None


_temperatures = st.none() | st.sampled_from([35.0, 36.5, 37.0, 37.4, 37.49, 37.5, 37.9, 37.99, 38.0, 38.5, 41.0])
_diaries = st.fixed_dictionaries(
    {
        "temperature": _temperatures,
        "vomiting": st.none() | st.integers(0, 4),
        "ommaya_site": st.none() | st.integers(0, 4),
        **{i: st.none() | st.integers(0, 4) for i in SEVERITY_ITEMS},
        **{i: st.none() | st.integers(0, 1) for i in BINARY_ITEMS},
    }
)


_SHIPPED_RULES = load_alert_rules(default_rules_path(), set(DIARY_ITEMS))


@settings(max_examples=500, deadline=None)
@given(answers=_diaries)
def test_rules_file_matches_clinical_reference(answers: dict[str, float | None]) -> None:
    result = evaluate(_SHIPPED_RULES, answers)
    assert result.level == _reference_level(answers)
    assert (result.level is None) == (result.triggered == ())
    for fired in result.triggered:
        assert all(answers[i] is not None for i in fired.answers)


# --------------------------------------------------------------------- loading


def test_default_rules_file_loads(rules: AlertRuleSet) -> None:
    assert rules.instrument == "symptom_diary"
    assert rules.settings.amber_review_hours == 24
    assert rules.settings.amber_escalation_hours == 24
    assert rules.items <= DIARY_ITEMS
    assert {r.level for r in rules.rules} == {"red", "amber"}
    for rule in rules.rules:
        assert set(rule.descriptions) == {"en", "zh_Hans"}
    assert rules.rule("red_seizure").level == "red"


def test_rule_lookup_by_id(rules: AlertRuleSet) -> None:
    for rule in rules.rules:
        assert rules.rule(rule.id) is rule
    with pytest.raises(KeyError, match="no_such_rule"):
        rules.rule("no_such_rule")


def test_known_items_are_optional() -> None:
    assert load_alert_rules(default_rules_path()).rules


def _default_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(default_rules_path().read_text(encoding="utf-8"))
    return data


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _duplicate_first_rule(data: dict[str, Any]) -> None:
    data["rules"].append(copy.deepcopy(data["rules"][0]))


# fmt: off
INVALID = [
    pytest.param(_set(("rules", 0, "condition", "item"), "seizures"), "rules[0](red_seizure).condition.item", "unknown item 'seizures'", id="unknown-item"),
    pytest.param(_set(("rules", 3, "condition", "all", 1, "any", 0, "item"), "neck"), "rules[3](red_headache_meningism).condition.all[1].any[0].item", "unknown item", id="unknown-nested-item"),
    pytest.param(_set(("rules", 2, "condition", "op"), ">="), "rules[2](red_fever).condition.op", "unknown op '>='", id="bad-op"),
    pytest.param(_set(("rules", 0, "level"), "orange"), "rules[0](red_seizure).level", "'orange'", id="bad-level"),
    pytest.param(_set(("rules", 0, "condition", "value"), True), "rules[0](red_seizure).condition.value", "0/1", id="yaml-yes-value"),
    pytest.param(_set(("rules", 0, "condition", "value"), "1"), "rules[0](red_seizure).condition.value", "finite number", id="string-value"),
    pytest.param(_set(("rules", 6, "condition", "all", 0, "value"), 2), "rules[6](red_ommaya_infection).condition.all[0].value", "non-empty list", id="in-scalar"),
    pytest.param(_set(("rules", 6, "condition", "all", 0, "value"), [2, "3"]), "condition.all[0].value[1]", "finite number", id="in-bad-member"),
    pytest.param(_set(("rules", 4, "condition", "any"), []), "rules[4](red_neuro_deficit).condition.any", "non-empty list", id="empty-any"),
    pytest.param(_set(("rules", 0, "condition", "threshold"), 1), "rules[0](red_seizure).condition.threshold", "unknown field", id="unknown-leaf-key"),
    pytest.param(_delete(("rules", 0, "condition", "op")), "rules[0](red_seizure).condition.op", "missing required field", id="missing-op"),
    pytest.param(_set(("rules", 0, "conditon"), {}), "rules[0].conditon", "unknown field", id="misspelt-rule-key"),
    pytest.param(_delete(("rules", 0, "description", "zh_Hans")), "rules[0](red_seizure).description.zh_Hans", "missing text", id="missing-locale"),
    pytest.param(_set(("rules", 0, "description", "en"), " "), "rules[0](red_seizure).description.en", "non-empty", id="blank-description"),
    pytest.param(_set(("rules", 0, "id"), "Red Seizure"), "rules[0].id", "does not match", id="bad-id"),
    pytest.param(_duplicate_first_rule, "rules[14].id", "duplicate rule id 'red_seizure'", id="duplicate-id"),
    pytest.param(_set(("settings", "amber_escalation_hours"), 0), "settings.amber_escalation_hours", "positive", id="zero-hours"),
    pytest.param(_delete(("settings", "amber_review_hours")), "settings.amber_review_hours", "missing required field", id="missing-setting"),
    pytest.param(_set(("version",), "1"), "version", "expected integer", id="bad-version"),
    pytest.param(_set(("rules",), []), "rules", "non-empty list", id="no-rules"),
]
# fmt: on


@pytest.mark.parametrize(("mutate", "field", "problem"), INVALID)
def test_loader_rejects_invalid_files(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], field: str, problem: str
) -> None:
    data = _default_data()
    mutate(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(DataFileError) as excinfo:
        load_alert_rules(path, set(DIARY_ITEMS))
    err = excinfo.value
    assert err.file == str(path)
    assert field in err.field
    assert problem in err.problem
    assert str(path) in str(err) and field in str(err)


def test_loader_rejects_duplicate_yaml_keys(tmp_path: Path) -> None:
    text = (
        default_rules_path()
        .read_text(encoding="utf-8")
        .replace(
            "condition: {item: seizure, op: eq, value: 1}",
            "condition: {item: seizure, op: eq, value: 1, value: 0}",
        )
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError, match=r"dup\.yaml.*duplicate key 'value'"):
        load_alert_rules(path)


def test_loader_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="nope.yaml"):
        load_alert_rules(tmp_path / "nope.yaml")


# --------------------------------------------------------------------- escalation

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)

ESCALATION = [
    pytest.param("amber", None, T0 + 23 * H + timedelta(minutes=59), False, id="amber-23h59"),
    pytest.param("amber", None, T0 + timedelta(hours=24) - timedelta(microseconds=1), False, id="amber-just-under-24h"),
    pytest.param("amber", None, T0 + 24 * H, True, id="amber-24h"),
    pytest.param("amber", None, T0 + 72 * H, True, id="amber-72h"),
    pytest.param("amber", T0 + 1 * H, T0 + 30 * H, False, id="amber-acknowledged"),
    pytest.param("amber", T0 + 25 * H, T0 + 26 * H, False, id="amber-acknowledged-late"),
    pytest.param("amber", T0 + 25 * H, T0 + 24 * H, True, id="amber-ack-not-yet-happened"),
    pytest.param("amber", None, T0, False, id="amber-just-raised"),
    pytest.param("red", None, T0 + 48 * H, False, id="red-never-escalates"),
]


@pytest.mark.parametrize(("level", "acknowledged_at", "now", "expected"), ESCALATION)
def test_needs_escalation(level: str, acknowledged_at: datetime | None, now: datetime, expected: bool) -> None:
    assert needs_escalation(level, T0, acknowledged_at, now) is expected


def test_escalation_compares_instants_across_timezones() -> None:
    shanghai = T0.astimezone(ZoneInfo("Asia/Shanghai"))  # same instant, +08:00
    assert needs_escalation("amber", shanghai, None, T0 + 24 * H)
    assert not needs_escalation("amber", shanghai, None, T0 + 23 * H)


def test_escalation_hours_come_from_settings(rules: AlertRuleSet) -> None:
    hours = rules.settings.amber_escalation_hours
    assert escalation_due_at(T0, hours) == T0 + 24 * H
    assert not needs_escalation("amber", T0, None, T0 + 11 * H, hours=12)
    assert needs_escalation("amber", T0, None, T0 + 12 * H, hours=12)


NAIVE = datetime(2025, 3, 1, 9, 0)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        pytest.param(("amber", NAIVE, None, T0), "raised_at", id="naive-raised"),
        pytest.param(("amber", T0, None, NAIVE), "now", id="naive-now"),
        pytest.param(("amber", T0, NAIVE, T0), "acknowledged_at", id="naive-ack"),
        pytest.param(("yellow", T0, None, T0), "level", id="bad-level"),
        pytest.param(("amber", T0, T0 - H, T0), "precedes", id="ack-before-raise"),
    ],
)
def test_needs_escalation_rejects_bad_input(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        needs_escalation(*args)


@pytest.mark.parametrize("hours", [0, -1, float("nan"), True])
def test_needs_escalation_rejects_bad_hours(hours: Any) -> None:
    with pytest.raises(ValueError, match="hours"):
        needs_escalation("amber", T0, None, T0, hours=hours)
