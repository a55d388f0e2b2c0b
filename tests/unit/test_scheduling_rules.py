"""Schedule files: the shipped ones load; a broken one names file and field."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from qol_app.datafile import DataFileError
from qol_app.scheduling import SCHEDULES_DIR, EventFact, PatientFacts, load_schedule, parse_schedule, plan
from qol_app.scheduling.rules import Target, Window

INSTRUMENTS = {"eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l", "symptom_diary"}
SHIPPED = sorted(SCHEDULES_DIR.glob("*.yaml"))


def test_shipped_schedules_exist() -> None:
    names = {path.name for path in SHIPPED}
    assert {"conquer.yaml", "fixed_calendar.example.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_schedule_loads_with_known_instruments(path: Path) -> None:
    schedule = load_schedule(path, known_instruments=INSTRUMENTS)
    assert schedule.rules
    assert schedule.source == str(path)


def test_conquer_matches_clinical_default() -> None:
    s = load_schedule(SCHEDULES_DIR / "conquer.yaml")
    assert s.arms == ("A", "B")
    base = s.rule("baseline")
    assert base.anchor == "randomization" and base.target == Target(offset_days=0)
    assert base.window == Window(before=7, after=0)
    assert base.instruments == ("eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l")
    cycle = s.rule("after_systemic_cycle")
    assert cycle.target is not None and cycle.target.last_cycle_day
    assert cycle.target.offset(21) == 20 and cycle.target.offset(14) == 13 and cycle.target.offset(28) == 27
    assert cycle.window is not None and (cycle.window.before, cycle.window.after) == (3, 3)
    assert cycle.window.until_next_cycle
    assert s.version == "2" and s.version_label == "conquer_default@2"
    it = s.rule("intrathecal_diary")
    assert it.arms == frozenset({"A"}) and it.days is not None and (it.days.first, it.days.last) == (1, 7)
    nadir = s.rule("nadir_diary")
    assert nadir.arms == frozenset({"A", "B"}) and nadir.days is not None
    assert (nadir.days.first, nadir.days.last) == (7, 14)
    assert s.rule("end_of_treatment").target.offset_days == 30  # type: ignore[union-attr]
    fu = s.rule("follow_up")
    assert fu.repeat is not None and fu.repeat.every_days == 28
    assert fu.instruments == ("eortc_qlq_c30", "eortc_qlq_bn20")
    # documented grace defaults
    assert base.grace_days == 3 and it.grace_days == 1


# --------------------------------------------------------------------------- malformed


def _base() -> dict[str, Any]:
    with (SCHEDULES_DIR / "conquer.yaml").open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)  # type: ignore[no-any-return]


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _rule(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in data["rules"] if r["id"] == rule_id)


def _mutations() -> list[tuple[str, Any, str]]:
    def set_rule(rule_id: str, path: list[str], value: object) -> Any:
        def mutate(d: dict[str, Any]) -> None:
            node = _rule(d, rule_id)
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value

        return mutate

    def top(key: str, value: object) -> Any:
        def mutate(d: dict[str, Any]) -> None:
            d[key] = value

        return mutate

    def drop(key: str) -> Any:
        def mutate(d: dict[str, Any]) -> None:
            del d[key]

        return mutate

    def drop_rule_field(rule_id: str, key: str) -> Any:
        def mutate(d: dict[str, Any]) -> None:
            del _rule(d, rule_id)[key]

        return mutate

    def dup_rule(d: dict[str, Any]) -> None:
        d["rules"].append(copy.deepcopy(d["rules"][0]))

    # (mutation, expected field in message, expected words)
    return [
        (drop("rules"), "rules", "required"),
        (top("lookahead_days", -1), "lookahead_days", ">= 0"),
        (top("lookahead_days", True), "lookahead_days", "integer"),
        (top("schema_version", 3), "schema_version", "unsupported"),
        (top("schema_version", 1), "rules[1].target.cycle_day", "schema_version: 2"),
        (drop("version"), "version", "required"),
        (top("version", "two words"), "version", "does not match"),
        (set_rule("progression", ["target"], {"cycle_day": 3}), "rules[4].target.cycle_day", "systemic_cycle"),
        (set_rule("after_systemic_cycle", ["target"], {"cycle_day": 0}), "rules[1].target.cycle_day", ">= 1"),
        (
            set_rule("after_systemic_cycle", ["target"], {"cycle_day": 2, "offset_days": 1}),
            "rules[1].target",
            "exactly one",
        ),
        (
            set_rule("end_of_treatment", ["window", "until_next_cycle"], True),
            "rules[5].window.until_next_cycle",
            "systemic_cycle",
        ),
        (top("colour", "blue"), "colour", "unknown field"),
        (set_rule("baseline", ["window", "before"], -2), "rules[0].window.before", ">= 0"),
        (set_rule("baseline", ["window", "befor"], 2), "rules[0].window.befor", "unknown field"),
        (set_rule("baseline", ["anchor"], "randomisation"), "rules[0].anchor", "is not one of"),
        (set_rule("baseline", ["arms"], ["C"]), "rules[0].arms[0]", "unknown arm 'C' (schedule arms: A, B)"),
        (top("defaults", {"grace_days": {"questionnaire": -1}}), "defaults.grace_days.questionnaire", ">= 0"),
        (top("defaults", {"cycle_length_days": 0}), "defaults.cycle_length_days", ">= 1"),
        (set_rule("baseline", ["kind"], "survey"), "rules[0].kind", "is not one of"),
        (set_rule("baseline", ["instruments"], []), "rules[0].instruments", "non-empty"),
        (
            set_rule("baseline", ["target", "offset_days"], "cycle_length"),
            "rules[0].target.offset_days",
            "systemic_cycle",
        ),
        (set_rule("progression", ["key"], "prog"), "rules[4].key", "{n}"),
        (set_rule("progression", ["key"], "prog-{x}"), "rules[4].key", "placeholder"),
        (set_rule("progression", ["key"], "prog-{n"), "rules[4].key", "invalid template 'prog-{n'"),
        (set_rule("follow_up", ["key"], "fu"), "rules[6].key", "{k}"),
        (set_rule("follow_up", ["repeat", "every_days"], 0), "rules[6].repeat.every_days", ">= 1"),
        (set_rule("nadir_diary", ["cycle_days", "last"], 3), "rules[3].cycle_days.last", ">= 8"),
        (set_rule("intrathecal_diary", ["days", "first"], -1), "rules[2].days.first", ">= 0"),  # before the dose
        (set_rule("nadir_diary", ["cycle_days", "first"], 0), "rules[3].cycle_days.first", ">= 1"),  # day 1 = dose
        (set_rule("nadir_diary", ["key"], "nadir"), "rules[3].key", "unknown field"),
        (drop_rule_field("end_of_treatment", "window"), "rules[5].window", "required"),
        (set_rule("end_of_treatment", ["grace_days"], "three"), "rules[5].grace_days", "integer"),
        (
            set_rule("end_of_treatment", ["target", "offset_days"], "30"),
            "rules[5].target.offset_days",
            "expected integer or 'cycle_length', got str",
        ),
        (set_rule("end_of_treatment", ["key"], "diary-eot"), "rules[5].key", "reserved"),
        (dup_rule, "rules[7].id", "duplicate rule id"),
    ]


@pytest.mark.parametrize(("mutate", "field", "words"), _mutations(), ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_schedule_names_file_and_field(tmp_path: Path, mutate: Any, field: str, words: str) -> None:
    data = _base()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(DataFileError) as info:
        load_schedule(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert info.value.field == field, message
    assert words in message


def test_unknown_instrument_rejected_when_registry_given(tmp_path: Path) -> None:
    data = _base()
    _rule(data, "baseline")["instruments"] = ["eortc_qlq_c30", "eortc_qlq_c31"]
    with pytest.raises(DataFileError, match=r"rules\[0\]\.instruments\[1\]: unknown instrument 'eortc_qlq_c31'"):
        load_schedule(_write(tmp_path, data), known_instruments=INSTRUMENTS)


def test_duplicate_yaml_key_and_bad_syntax_name_the_file(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("schema_version: 1\nid: x\nid: y\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"dup\.yaml: id: duplicate key 'id' \(also on line 2\)"):
        load_schedule(dup)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"bad\.yaml: not valid YAML"):
        load_schedule(bad)
    with pytest.raises(DataFileError, match=r"missing\.yaml: cannot read file"):
        load_schedule(tmp_path / "missing.yaml")


def test_top_level_must_be_mapping() -> None:
    with pytest.raises(DataFileError, match=r"^inline: expected mapping, got list"):
        parse_schedule(["not", "a", "mapping"], source="inline")


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        (lambda r: r["target"].update(offset_days=20), "rules[1].target", "give exactly one of offset_days, cycle_day"),
        (
            lambda r: r.update(anchor="progression", key="p-{n}"),
            "rules[1].target.cycle_day",
            "cycle days are only valid with anchor systemic_cycle",
        ),
        (
            lambda r: r.update(anchor="progression", key="p-{n}", target={"offset_days": "cycle_length"}),
            "rules[1].target.offset_days",
            "cycle_length is only valid with anchor systemic_cycle",
        ),
    ],
    ids=["offset-and-cycle-day", "cycle-day-off-cycle", "cycle-length-off-cycle"],
)
def test_cycle_day_errors_say_what_to_change(tmp_path: Path, mutate: Any, field: str, problem: str) -> None:
    """The whole problem text, as the protocol editor reads it."""
    data = _base()
    mutate(_rule(data, "after_systemic_cycle"))
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert (info.value.field, info.value.problem) == (field, problem)


def test_cycle_days_in_a_format_1_file_ask_for_format_2(tmp_path: Path) -> None:
    data = _base()
    data["schema_version"] = 1
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert (info.value.field, info.value.problem) == ("rules[1].target.cycle_day", "cycle days need schema_version: 2")


def test_parsed_data_is_named_by_its_source_and_checked_against_known_instruments() -> None:
    data = _base()
    assert parse_schedule(data, source="amendment 3").source == "amendment 3"
    with pytest.raises(DataFileError) as info:
        parse_schedule({**data, "lookahead_days": -1}, source="amendment 3")
    assert (info.value.file, info.value.field) == ("amendment 3", "lookahead_days")
    _rule(data, "baseline")["instruments"] = ["eortc_qlq_c31"]
    with pytest.raises(DataFileError, match=r"rules\[0\]\.instruments\[0\]: unknown instrument 'eortc_qlq_c31'"):
        parse_schedule(data, source="amendment 3", known_instruments=INSTRUMENTS)


@pytest.mark.parametrize(
    ("rule_id", "key", "problem"),
    [
        ("after_systemic_cycle", "sys-c{n:02d}", "placeholders in 'sys-c{n:02d}' take no format spec or conversion"),
        ("after_systemic_cycle", "sys-c{n!r}", "placeholders in 'sys-c{n!r}' take no format spec or conversion"),
        ("after_systemic_cycle", "Sys-C{n}", "'Sys-C{n}' must give lower-case letters, digits, '-' or '_'"),
        ("follow_up", "fu", "a repeating rule needs {k} (the occurrence number) in its key"),
        ("end_of_treatment", "eot-{k}", "{k} is only meaningful with repeat"),
    ],
)
def test_key_template_errors_say_what_to_change(tmp_path: Path, rule_id: str, key: str, problem: str) -> None:
    data = _base()
    _rule(data, rule_id)["key"] = key
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert info.value.problem == problem


def test_arms_all_means_every_arm_of_the_schedule(tmp_path: Path) -> None:
    data = _base()
    _rule(data, "intrathecal_diary")["arms"] = "all"
    assert load_schedule(_write(tmp_path, data)).rule("intrathecal_diary").arms == frozenset({"A", "B"})


def test_an_instrument_listed_twice_is_refused(tmp_path: Path) -> None:
    data = _base()
    _rule(data, "baseline")["instruments"] = ["eq5d5l", "eortc_qlq_c30", "eq5d5l"]
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert (info.value.field, info.value.problem) == ("rules[0].instruments", "lists an instrument twice")


def test_defaults_and_per_rule_cycle_lengths(tmp_path: Path) -> None:
    def target(data: dict[str, Any]) -> Any:
        schedule = load_schedule(_write(tmp_path, data))
        patient = PatientFacts("B", date(2026, 3, 2), "Asia/Shanghai")
        cycle = EventFact(1, "systemic_cycle", date(2026, 3, 4))  # no length recorded
        return {tp.key: tp for tp in plan(schedule, patient, [cycle], date(2026, 3, 2))}["sys-c1"].target_date

    data = _base()
    data["defaults"] = {"grace_days": {"questionnaire": 0, "diary": 0}, "cycle_length_days": 1}
    schedule = load_schedule(_write(tmp_path, data))  # no grace at all and 1-day cycles are allowed
    assert (schedule.rule("baseline").grace_days, schedule.rule("nadir_diary").grace_days) == (0, 0)
    data["defaults"] = {"grace_days": {"questionnaire": 2}}  # no cycle length: 21 days
    assert target(data) == date(2026, 3, 24)  # cycle day 21
    _rule(data, "after_systemic_cycle")["cycle_length_days"] = 28  # the rule's own default
    assert target(data) == date(2026, 3, 31)  # cycle day 28


def test_a_rule_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    data = _base()
    data["rules"][1] = ["after_systemic_cycle"]
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert info.value.field == "rules[1]" and "expected mapping" in info.value.problem


@pytest.mark.parametrize(
    ("rule_id", "changes", "field", "problem"),
    [
        ("baseline", {"description": 7}, "rules[0].description", "expected string, got int"),
        ("baseline", {"grace_days": -1}, "rules[0].grace_days", "must be >= 0, got -1"),
        (
            "follow_up",
            {"repeat": {"every_days": 28, "max_count": 0}},
            "rules[6].repeat.max_count",
            "must be >= 1, got 0",
        ),
        ("baseline", {"window": {"before": 7, "after": -1}}, "rules[0].window.after", "must be >= 0, got -1"),
        ("after_systemic_cycle", {"cycle_length_days": 0}, "rules[1].cycle_length_days", "must be >= 1, got 0"),
        (
            "nadir_diary",
            {"anchor": "intrathecal_dose"},
            "rules[3].cycle_days",
            "cycle days are only valid with anchor systemic_cycle",
        ),
    ],
)
def test_rule_field_errors(tmp_path: Path, rule_id: str, changes: dict[str, Any], field: str, problem: str) -> None:
    data = _base()
    _rule(data, rule_id).update(changes)
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert (info.value.field, info.value.problem) == (field, problem)


def test_rule_description_grace_and_cycle_length_are_read_as_written(tmp_path: Path) -> None:
    data = _base()
    _rule(data, "baseline").update(description="Before the first dose", grace_days=0)
    _rule(data, "after_systemic_cycle")["cycle_length_days"] = 1
    del _rule(data, "progression")["description"]
    data["description"] = "Amendment 3: follow-up every 4 weeks"  # the file's own description is optional
    schedule = load_schedule(_write(tmp_path, data))
    assert (schedule.rule("baseline").description, schedule.rule("baseline").grace_days) == ("Before the first dose", 0)
    assert schedule.rule("after_systemic_cycle").cycle_length_days == 1
    assert schedule.rule("progression").description == ""


def test_arms_are_listed_once_each_with_plain_names(tmp_path: Path) -> None:
    data = _base()
    data["arms"] = ["A", "B", "A"]
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert (info.value.field, info.value.problem) == ("arms", "lists an arm twice")
    data["arms"] = ["A", "arm B"]
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert info.value.field == "arms[1]" and "does not match" in info.value.problem


def test_a_repeat_may_stop_after_one_occurrence(tmp_path: Path) -> None:
    data = _base()
    _rule(data, "follow_up")["repeat"] = {"every_days": 28, "max_count": 1}
    assert load_schedule(_write(tmp_path, data)).rule("follow_up").repeat.max_count == 1  # type: ignore[union-attr]


def test_an_integer_protocol_version_is_read_as_text(tmp_path: Path) -> None:
    data = _base()
    data["version"] = 2  # `version: 2` in YAML
    assert load_schedule(_write(tmp_path, data)).version_label == "conquer_default@2"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("version", True, "expected string, got bool True"),
        ("version", -1, "'-1' does not match ^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"),
        ("schema_version", 0, "must be >= 1, got 0"),
        ("schema_version", 3, "unsupported version 3 (this code reads 1, 2)"),
    ],
)
def test_version_errors(tmp_path: Path, key: str, value: object, problem: str) -> None:
    data = _base()
    data[key] = value
    path = _write(tmp_path, data)
    with pytest.raises(DataFileError) as info:
        load_schedule(path)
    assert (info.value.file, info.value.field, info.value.problem) == (str(path), key, problem)


def test_a_format_1_file_is_version_1_and_titles_default_to_the_id(tmp_path: Path) -> None:
    data = _base()
    data.update(schema_version=1, study_end_days=1)  # a study of one day is short, but allowed
    del data["version"]
    for rule in data["rules"]:  # format 1 has no cycle days
        if "cycle_days" in rule:
            del rule["cycle_days"]
            rule["days"] = {"first": 7, "last": 14}
        if rule.get("target") == {"cycle_day": "last"}:
            rule["target"], rule["window"] = {"offset_days": "cycle_length"}, {"before": 3, "after": 3}
    schedule = load_schedule(_write(tmp_path, data))
    assert (schedule.version, schedule.version_label, schedule.study_end_days) == ("1", "conquer_default@1", 1)
    assert schedule.title == data["title"]
    del data["title"]
    assert load_schedule(_write(tmp_path, data)).title == "conquer_default"
    data["study_end_days"] = 0
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert (info.value.field, info.value.problem) == ("study_end_days", "must be >= 1, got 0")


def test_a_format_2_file_needs_a_protocol_version(tmp_path: Path) -> None:
    data = _base()
    del data["version"]
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert (info.value.field, info.value.problem) == ("version", "missing required field")


def test_a_key_template_or_rule_id_used_twice_is_refused_naming_the_other_rule(tmp_path: Path) -> None:
    data = _base()
    _rule(data, "end_of_treatment")["key"] = "baseline"
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert (info.value.field, info.value.problem) == (
        "rules[5].key",
        "key template 'baseline' already used by rule 'baseline'",
    )
    data = _base()
    data["rules"].append(copy.deepcopy(data["rules"][0]))
    with pytest.raises(DataFileError) as info:
        load_schedule(_write(tmp_path, data))
    assert (info.value.field, info.value.problem) == ("rules[7].id", "duplicate rule id 'baseline' (also rules[0])")


def test_without_defaults_an_unlengthed_cycle_lasts_21_days(tmp_path: Path) -> None:
    data = _base()
    del data["defaults"]
    schedule = load_schedule(_write(tmp_path, data))
    patient = PatientFacts("B", date(2026, 3, 2), "Asia/Shanghai")
    tps = {
        tp.key: tp
        for tp in plan(schedule, patient, [EventFact(1, "systemic_cycle", date(2026, 3, 4))], date(2026, 3, 2))
    }
    assert tps["sys-c1"].target_date == date(2026, 3, 24)  # cycle day 21


def test_forms_open_at_the_end_are_not_expected_unless_the_file_says_otherwise(tmp_path: Path) -> None:
    data = _base()
    del data["open_forms_at_end"]
    schedule = load_schedule(_write(tmp_path, data))
    assert schedule.open_forms_at_end == "not_expected"
    died = PatientFacts("B", date(2026, 3, 2), "Asia/Shanghai", end_status="died", end_date=date(2026, 3, 4))
    (baseline,) = plan(schedule, died, [], date(2026, 3, 4))  # still in its grace days on the day of death
    assert not baseline.expected
