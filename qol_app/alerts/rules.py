"""Symptom-diary alert rules: loaded from YAML, evaluated as a pure function.

Thresholds are clinical data (CLINICAL.md §5) that need clinician sign-off, so
they live in versioned, reviewable YAML under ``qol_app/questionnaires/alerts/`` and
this module only interprets them. Nothing here touches Flask, the database or
the clock, so the web request, the scheduler and the tests share one code path.

Condition language (a node is one of):

* ``{item: <id>, op: ge|gt|le|lt|eq|in, value: <number> | [<number>, ...]}``
* ``{all: [<node>, ...]}`` -- every child holds
* ``{any: [<node>, ...]}`` -- at least one child holds

A skipped answer (``None`` or missing) never satisfies a comparison, so a
blank diary can never raise an alert and ``le``/``lt`` never fire on silence.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, cast

from qol_app.datafile import Node, read_file
from qol_app.paths import QUESTIONNAIRE_DIR

Level: TypeAlias = Literal["red", "amber"]
Op: TypeAlias = Literal["ge", "gt", "le", "lt", "eq", "in"]
Number: TypeAlias = int | float
Answer: TypeAlias = int | float | None

#: Alert levels, highest priority first: red wins over amber.
LEVELS: Final[tuple[Level, ...]] = ("red", "amber")
#: Every rule description must exist in each of these; nurses never see a fallback.
REQUIRED_LOCALES: Final[tuple[str, ...]] = ("en", "zh_Hans")

_COMPARATORS: Final[Mapping[str, Callable[[Number, Any], bool]]] = MappingProxyType(
    {
        "ge": operator.ge,
        "gt": operator.gt,
        "le": operator.le,
        "lt": operator.lt,
        "eq": operator.eq,
        "in": lambda answer, values: answer in values,
    }
)


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Leaf condition: ``answers[item] <op> value``; a skipped answer is False."""

    item: str
    op: Op
    value: Number | tuple[Number, ...]

    def items(self) -> tuple[str, ...]:
        return (self.item,)


@dataclass(frozen=True)
class AllOf:
    """Holds when every child holds."""

    conditions: tuple[Condition, ...]

    def items(self) -> tuple[str, ...]:
        return _unique(i for c in self.conditions for i in c.items())


@dataclass(frozen=True)
class AnyOf:
    """Holds when at least one child holds."""

    conditions: tuple[Condition, ...]

    def items(self) -> tuple[str, ...]:
        return _unique(i for c in self.conditions for i in c.items())


Condition: TypeAlias = Comparison | AllOf | AnyOf


@dataclass(frozen=True)
class AlertSettings:
    """Follow-up timing for amber alerts, in hours."""

    amber_review_hours: float
    amber_escalation_hours: float


@dataclass(frozen=True)
class AlertRule:
    """One named clinical criterion; ``descriptions`` maps locale -> nurse-facing text."""

    id: str
    level: Level
    condition: Condition
    descriptions: Mapping[str, str]

    def description(self, locale: str) -> str:
        """Text for ``locale``; KeyError rather than a silent fallback language."""
        return self.descriptions[locale]


@dataclass(frozen=True)
class AlertRuleSet:
    """A validated rules file; ``rules`` keeps file order (the order nurses see)."""

    source: str
    version: int
    instrument: str
    settings: AlertSettings
    rules: tuple[AlertRule, ...]

    @property
    def items(self) -> frozenset[str]:
        """Every item id some rule looks at."""
        return frozenset(i for r in self.rules for i in r.condition.items())

    def rule(self, rule_id: str) -> AlertRule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


@dataclass(frozen=True)
class TriggeredRule:
    """A rule that fired, with the answers that made it fire (kept for the record)."""

    rule_id: str
    level: Level
    descriptions: Mapping[str, str]
    answers: Mapping[str, Number]

    def description(self, locale: str) -> str:
        return self.descriptions[locale]


@dataclass(frozen=True)
class AlertResult:
    """Outcome of one diary: ``level`` is the highest triggered level or None.

    ``triggered`` lists every rule that fired, red before amber and file order
    within a level, so a nurse sees all findings, not only the worst one.
    ``answers`` merges the triggering answers of all fired rules.
    """

    level: Level | None
    triggered: tuple[TriggeredRule, ...]
    answers: Mapping[str, Number]
    rules_version: int

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(t.rule_id for t in self.triggered)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def evaluate(rule_set: AlertRuleSet, answers: Mapping[str, Answer]) -> AlertResult:
    """Apply ``rule_set`` to one diary's ``answers`` (item id -> code or °C).

    Missing items count as skipped. Raises TypeError/ValueError if an item a
    rule looks at holds something other than a finite number or None: a string
    ``"1"`` would otherwise compare unequal to 1 and silently hide a seizure.
    """
    _check_answers(rule_set.items, answers)
    fired: list[TriggeredRule] = []
    for rule in rule_set.rules:
        items = _match(rule.condition, answers)
        if items is not None:
            recorded = {i: cast(Number, answers[i]) for i in items}
            fired.append(TriggeredRule(rule.id, rule.level, rule.descriptions, MappingProxyType(recorded)))
    fired.sort(key=lambda t: LEVELS.index(t.level))  # stable: file order within a level
    merged: dict[str, Number] = {}
    for t in fired:
        merged.update(t.answers)
    return AlertResult(
        level=fired[0].level if fired else None,
        triggered=tuple(fired),
        answers=MappingProxyType(merged),
        rules_version=rule_set.version,
    )


def _match(condition: Condition, answers: Mapping[str, Answer]) -> tuple[str, ...] | None:
    """The items that satisfied ``condition``, or None when it does not hold.

    No short-circuit: every satisfied branch of an ``any`` is reported, so the
    record shows both neck stiffness and vomiting when both were present.
    """
    if isinstance(condition, Comparison):
        answer = answers.get(condition.item)
        if answer is None or not _COMPARATORS[condition.op](answer, condition.value):
            return None
        return (condition.item,)
    results = [_match(c, answers) for c in condition.conditions]
    held = [r for r in results if r is not None]
    if not held or (isinstance(condition, AllOf) and len(held) < len(results)):
        return None
    return _unique(i for r in held for i in r)


def _check_answers(items: frozenset[str], answers: Mapping[str, Answer]) -> None:
    for item in sorted(items):
        value = answers.get(item)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"answer {item!r} must be an int/float code or None, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"answer {item!r} must be finite, got {value!r}")


def _unique(items: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# --------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------


def default_rules_path() -> Path:
    """The CONQUER rules file shipped in the source tree."""
    return QUESTIONNAIRE_DIR / "alerts" / "conquer.yaml"


def load_alert_rules(path: str | Path, known_items: set[str] | None = None) -> AlertRuleSet:
    """Read and validate a rules file.

    ``known_items`` (usually the diary instrument's item ids) lets a typo in an
    item id fail at load time instead of producing a rule that never fires.
    Raises :class:`~qol_app.datafile.DataFileError` naming the file (``path`` as given) and field.
    """
    return _Parser(None if known_items is None else frozenset(known_items)).rule_set(read_file(path))


@dataclass(frozen=True)
class _Parser:
    known_items: frozenset[str] | None

    def rule_set(self, root: Node) -> AlertRuleSet:
        top = root.fields(("version", "instrument", "settings", "rules"))
        version = top["version"].as_int(minimum=1)
        instrument = top["instrument"].ident()
        settings = self.settings(top["settings"])
        nodes = top["rules"].as_list(min_len=1)
        rules = tuple(self.rule(node) for node in nodes)
        seen: set[str] = set()
        for node, rule in zip(nodes, rules, strict=True):
            if rule.id in seen:
                node.child("id").fail(f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
        return AlertRuleSet(root.file, version, instrument, settings, rules)

    def settings(self, node: Node) -> AlertSettings:
        raw = node.fields(("amber_review_hours", "amber_escalation_hours"))
        hours = {key: self.hours(value) for key, value in raw.items()}
        return AlertSettings(hours["amber_review_hours"], hours["amber_escalation_hours"])

    def hours(self, node: Node) -> float:
        value = node.as_number()
        if value <= 0:
            node.fail(f"must be a positive number of hours, got {node.value!r}")
        return value

    def rule(self, node: Node) -> AlertRule:
        raw = node.fields(("id", "level", "description", "condition"))
        rule_id = raw["id"].ident()
        named = node.labelled(rule_id)  # rules[3](red_fever).condition...: a nurse-readable path
        return AlertRule(
            id=rule_id,
            level=cast(Level, named.child("level").choice(LEVELS)),
            condition=self.condition(named.child("condition")),
            descriptions=MappingProxyType(
                {loc: text.strip() for loc, text in named.child("description").as_text(REQUIRED_LOCALES).items()}
            ),
        )

    def condition(self, node: Node) -> Condition:
        data = node.mapping()
        if data.keys() & {"all", "any"}:
            if len(data) != 1:
                node.fail(f"'all'/'any' must be the only key, got {', '.join(map(str, data))}")
            ((kind, _),) = data.items()
            children = node.child(kind).as_list(min_len=1)
            parsed = tuple(self.condition(child) for child in children)
            return AllOf(parsed) if kind == "all" else AnyOf(parsed)
        return self.comparison(node)

    def comparison(self, node: Node) -> Comparison:
        raw = node.fields(("item", "op", "value"))
        item = raw["item"].as_str()
        if self.known_items is not None and item not in self.known_items:
            raw["item"].fail(f"unknown item {item!r}; known {', '.join(sorted(self.known_items))}")
        if not isinstance(raw["op"].value, str) or raw["op"].value not in _COMPARATORS:
            raw["op"].fail(f"unknown op {raw['op'].value!r}; allowed {', '.join(_COMPARATORS)}")
        op = cast(Op, raw["op"].value)
        if op == "in":
            values = raw["value"]
            if not isinstance(values.value, list) or not values.value:
                values.fail("op 'in' needs a non-empty list of numbers")
            return Comparison(item, op, tuple(self.number(v) for v in values.as_list()))
        return Comparison(item, op, self.number(raw["value"]))

    def number(self, node: Node) -> Number:
        # YAML 1.1 reads yes/no/on/off as booleans; demand the 0/1 codes instead.
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            node.fail(f"must be a finite number (use codes, e.g. 0/1), got {value!r}")
        return value
