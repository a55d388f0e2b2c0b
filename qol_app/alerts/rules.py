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
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, cast

import yaml

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
_RULE_ID: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_TOP_KEYS: Final = frozenset({"version", "instrument", "settings", "rules"})
_SETTINGS_KEYS: Final = frozenset({"amber_review_hours", "amber_escalation_hours"})
_RULE_KEYS: Final = frozenset({"id", "level", "description", "condition"})
_LEAF_KEYS: Final = frozenset({"item", "op", "value"})


class AlertRulesError(ValueError):
    """A rules file is malformed; the message names the file and the field."""

    def __init__(self, path: str, field: str, problem: str) -> None:
        super().__init__(f"{path}: {field}: {problem}")
        self.path = path
        self.field = field
        self.problem = problem


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
    Raises AlertRulesError naming the file and field on any problem.
    """
    src = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AlertRulesError(src, "<file>", f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise AlertRulesError(src, "<yaml>", str(exc)) from exc
    return _Parser(src, None if known_items is None else frozenset(known_items)).rule_set(data)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which PyYAML silently overwrites."""


def _construct_unique_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable):
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


@dataclass(frozen=True)
class _Parser:
    source: str
    known_items: frozenset[str] | None

    def fail(self, field: str, problem: str) -> AlertRulesError:
        return AlertRulesError(self.source, field, problem)

    def mapping(self, data: Any, field: str, keys: frozenset[str], required: frozenset[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(field, f"expected a mapping, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in keys)
        if unknown:
            raise self.fail(field, f"unknown key(s) {unknown}; allowed {sorted(keys)}")
        missing = sorted(required - data.keys())
        if missing:
            raise self.fail(field, f"missing key(s) {missing}")
        return data

    def rule_set(self, data: Any) -> AlertRuleSet:
        top = self.mapping(data, "<top>", _TOP_KEYS, _TOP_KEYS)
        version = top["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise self.fail("version", f"must be a positive integer, got {version!r}")
        instrument = top["instrument"]
        if not isinstance(instrument, str) or not instrument:
            raise self.fail("instrument", f"must be a non-empty string, got {instrument!r}")
        raw_rules = top["rules"]
        if not isinstance(raw_rules, list) or not raw_rules:
            raise self.fail("rules", "must be a non-empty list")
        rules = tuple(self.rule(r, f"rules[{n}]") for n, r in enumerate(raw_rules))
        seen: set[str] = set()
        for n, r in enumerate(rules):
            if r.id in seen:
                raise self.fail(f"rules[{n}].id", f"duplicate rule id {r.id!r}")
            seen.add(r.id)
        return AlertRuleSet(self.source, version, instrument, self.settings(top["settings"]), rules)

    def settings(self, data: Any) -> AlertSettings:
        raw = self.mapping(data, "settings", _SETTINGS_KEYS, _SETTINGS_KEYS)
        for key in sorted(_SETTINGS_KEYS):
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise self.fail(f"settings.{key}", f"must be a positive number of hours, got {v!r}")
        return AlertSettings(
            amber_review_hours=raw["amber_review_hours"],
            amber_escalation_hours=raw["amber_escalation_hours"],
        )

    def rule(self, data: Any, field: str) -> AlertRule:
        raw = self.mapping(data, field, _RULE_KEYS, _RULE_KEYS)
        rule_id = raw["id"]
        if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
            raise self.fail(f"{field}.id", f"must match {_RULE_ID.pattern}, got {rule_id!r}")
        field = f"{field}({rule_id})"
        level = raw["level"]
        if level not in LEVELS:
            raise self.fail(f"{field}.level", f"must be one of {list(LEVELS)}, got {level!r}")
        return AlertRule(
            id=rule_id,
            level=level,
            condition=self.condition(raw["condition"], f"{field}.condition"),
            descriptions=self.descriptions(raw["description"], f"{field}.description"),
        )

    def descriptions(self, data: Any, field: str) -> Mapping[str, str]:
        locales = frozenset(REQUIRED_LOCALES)
        raw = self.mapping(data, field, locales, locales)
        for locale in REQUIRED_LOCALES:
            text = raw[locale]
            if not isinstance(text, str) or not text.strip():
                raise self.fail(f"{field}.{locale}", "must be a non-empty string")
        return MappingProxyType({loc: raw[loc].strip() for loc in REQUIRED_LOCALES})

    def condition(self, data: Any, field: str) -> Condition:
        if not isinstance(data, dict):
            raise self.fail(field, f"expected a mapping, got {type(data).__name__}")
        if data.keys() & {"all", "any"}:
            if len(data) != 1:
                raise self.fail(field, f"'all'/'any' must be the only key, got {sorted(map(str, data))}")
            ((kind, children),) = data.items()
            if not isinstance(children, list) or not children:
                raise self.fail(f"{field}.{kind}", "must be a non-empty list of conditions")
            parsed = tuple(self.condition(c, f"{field}.{kind}[{n}]") for n, c in enumerate(children))
            return AllOf(parsed) if kind == "all" else AnyOf(parsed)
        return self.comparison(data, field)

    def comparison(self, data: Any, field: str) -> Comparison:
        raw = self.mapping(data, field, _LEAF_KEYS, _LEAF_KEYS)
        item, op, value = raw["item"], raw["op"], raw["value"]
        if not isinstance(item, str) or not item:
            raise self.fail(f"{field}.item", f"must be a non-empty string, got {item!r}")
        if self.known_items is not None and item not in self.known_items:
            raise self.fail(f"{field}.item", f"unknown item {item!r}; known {sorted(self.known_items)}")
        if op not in _COMPARATORS:
            raise self.fail(f"{field}.op", f"unknown op {op!r}; allowed {sorted(_COMPARATORS)}")
        if op == "in":
            if not isinstance(value, list) or not value:
                raise self.fail(f"{field}.value", "op 'in' needs a non-empty list of numbers")
            for n, v in enumerate(value):
                self.number(v, f"{field}.value[{n}]")
            return Comparison(item, op, tuple(value))
        return Comparison(item, op, self.number(value, f"{field}.value"))

    def number(self, value: Any, field: str) -> Number:
        # YAML 1.1 reads yes/no/on/off as booleans; demand the 0/1 codes instead.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(field, f"must be a finite number (use codes, e.g. 0/1), got {value!r}")
        return value
