"""One data-file kit: instruments, schedules and alert rules fail the same way, naming file and field.

Each case edits the text of a shipped file (so comments, anchors and layout stay real), loads
it with that kind's loader and checks the ``DataFileError``: the file as the loader names it,
the field path of the problem, and the problem. A syntax error has no field yet: it names the
line instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qol_app.alerts import default_rules_path, load_alert_rules
from qol_app.datafile import DataFileError, Node, read_yaml
from qol_app.instruments import DEFAULT_DIRECTORY, load_instrument
from qol_app.scheduling import SCHEDULES_DIR, load_schedule

# kind -> (shipped file, loader, how the loader names the file in errors)
KINDS: dict[str, tuple[Path, Callable[[Path], Any], Callable[[Path], str]]] = {
    "instrument": (DEFAULT_DIRECTORY / "symptom_diary.yaml", load_instrument, lambda p: p.name),
    "schedule": (SCHEDULES_DIR / "conquer.yaml", load_schedule, str),
    "alert rules": (default_rules_path(), load_alert_rules, str),
}

# (kind, case, text replaced once, replacement, field path, problem the message starts with)
# fmt: off
CASES = [
    ("instrument", "syntax error", "languages: [en, zh_Hans]", "languages: [en, zh_Hans", "", "not valid YAML"),
    ("instrument", "duplicate key", "{code: 1, label: {en: Mild", "{code: 1, code: 2, label: {en: Mild", "option_sets.severity[1].code", "duplicate key 'code'"),
    ("instrument", "unknown field", "wording: original", "wording: original\ncolour: red", "colour", "unknown field (allowed: id, version,"),
    ("instrument", "missing field", 'version: "1.0"\n', "", "version", "missing required field"),
    ("instrument", "wrong type", "{code: 0, label: {en: None", "{code: zero, label: {en: None", "option_sets.severity[0].code", "expected integer, got str 'zero'"),
    ("schedule", "syntax error", "arms: [A, B]", "arms: [A, B", "", "not valid YAML"),
    ("schedule", "duplicate key", "    anchor: randomization\n", "    anchor: randomization\n    anchor: systemic_cycle\n", "rules[0].anchor", "duplicate key 'anchor'"),
    ("schedule", "unknown field", "    arms: both\n", "    arms: both\n    colour: red\n", "rules[0].colour", "unknown field (allowed: id, kind,"),
    ("schedule", "missing field", "    anchor: randomization\n", "", "rules[0].anchor", "missing required field"),
    ("schedule", "wrong type", "lookahead_days: 35", "lookahead_days: five weeks", "lookahead_days", "expected integer, got str 'five weeks'"),
    ("alert rules", "syntax error", "version: 1\n", "version: [1\n", "", "not valid YAML"),
    ("alert rules", "duplicate key", "  amber_review_hours: 24", "  amber_review_hours: 24\n  amber_review_hours: 12", "settings.amber_review_hours", "duplicate key 'amber_review_hours'"),
    ("alert rules", "unknown field", "instrument: symptom_diary", "instrument: symptom_diary\ncolour: red", "colour", "unknown field (allowed: version, instrument, settings, rules)"),
    ("alert rules", "missing field", "    level: red\n", "", "rules[0].level", "missing required field"),
    ("alert rules", "wrong type", "  amber_escalation_hours: 24", "  amber_escalation_hours: a day", "settings.amber_escalation_hours", "expected number, got str 'a day'"),
]
# fmt: on


@pytest.mark.parametrize(
    ("kind", "case", "old", "new", "field", "problem"), CASES, ids=[f"{kind}-{case}" for kind, case, *_ in CASES]
)
def test_every_kind_names_file_and_field(
    tmp_path: Path, kind: str, case: str, old: str, new: str, field: str, problem: str
) -> None:
    shipped, load, name = KINDS[kind]
    text = shipped.read_text(encoding="utf-8")
    assert old in text, "the shipped file changed: pick another line to break"
    path = tmp_path / shipped.name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(DataFileError) as caught:
        load(path)
    error = caught.value
    assert (error.file, error.field) == (name(path), field), str(error)
    assert error.problem.startswith(problem), str(error)
    where = f"{name(path)}: {field}: " if field else f"{name(path)}: "
    assert str(error) == where + error.problem
    if case == "syntax error":
        assert re.search(r"line \d+, column \d+", error.problem), str(error)


def test_the_shipped_files_load_unchanged(tmp_path: Path) -> None:
    for shipped, load, _name in KINDS.values():
        copy = tmp_path / shipped.name
        copy.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
        load(copy)  # the cases above fail for the edit they make, not for the file


def test_an_unreadable_file_names_it(tmp_path: Path) -> None:
    for _shipped, load, name in KINDS.values():
        with pytest.raises(DataFileError, match=r"cannot read file") as caught:
            load(tmp_path / "absent.yaml")
        assert caught.value.file == name(tmp_path / "absent.yaml")


def test_a_data_file_error_is_a_value_error() -> None:
    # The CLI and the configuration check catch ValueError for every bad input file.
    assert issubclass(DataFileError, ValueError)


def test_merge_keys_may_override_but_not_repeat() -> None:
    base = "defaults: &d {a: 1, b: 2}\nuse:\n  <<: *d\n  b: 3\n"
    assert read_yaml(base, "f.yaml")["use"] == {"a": 1, "b": 3}
    with pytest.raises(DataFileError) as caught:
        read_yaml(base + "  b: 4\n", "f.yaml")
    assert (caught.value.field, caught.value.problem) == ("use.b", "duplicate key 'b' (also on line 4)")


def test_node_paths_and_checks() -> None:
    root = Node("f.yaml", "", read_yaml("rules:\n  - {id: a, days: -1, flag: yes}\n", "f.yaml"))
    rule = root.fields(("rules",))["rules"].as_list(min_len=1)[0].labelled("a")
    fields = rule.fields(("id", "days", "flag"))
    with pytest.raises(DataFileError, match=r"^f\.yaml: rules\[0\]\(a\)\.days: must be >= 0, got -1$"):
        fields["days"].as_int(minimum=0)
    with pytest.raises(DataFileError, match=r"^f\.yaml: rules\[0\]\(a\)\.flag: expected integer, got bool True$"):
        fields["flag"].as_int()
    with pytest.raises(DataFileError, match=r"^f\.yaml: rules\[0\]\(a\)\.id: 'a' does not match \^\[A-Z\]\$$"):
        fields["id"].as_str(re.compile(r"^[A-Z]$"))
    with pytest.raises(DataFileError, match=r"^f\.yaml: rules\[0\]\(a\)\.id: 'a' is not one of b, c$"):
        fields["id"].choice(("b", "c"))
    assert fields["id"].ident() == "a"
