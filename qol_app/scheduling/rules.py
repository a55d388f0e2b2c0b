"""Protocol schedules as validated data (``qol_app/questionnaires/schedules/*.yaml``).

The schedule is data because CLINICAL.md §2 is an assumption that each
protocol (or amendment) may change; code only knows the rule *types*.
Everything is checked at load time so that a typo fails at start-up with the
file and field named, never as a wrong timepoint in front of a patient.

Format 2 (``schema_version: 2``) counts cycle days as clinicians do (day 1 = the
administration day) and carries a protocol version; format 1 (below) still loads, its
``version`` defaults to ``"1"``. Format 2 adds, for rules anchored on ``systemic_cycle``::

    version: "2026-12"              # required: stored with every timepoint this file creates
    rules:
      - id: after_systemic_cycle
        target: {cycle_day: last}   # cycle day N (1 = administration day), or last = the
                                    # cycle's own length (day 21 of a 21-day cycle)
        window: {before: 3, after: 3, until_next_cycle: true}
                                    # the window (and grace) end no later than the day
                                    # before the next recorded administration
      - id: nadir_diary
        kind: diary
        cycle_days: {first: 8, last: 15}   # instead of days: cycle days, inclusive

Format 1 (``schema_version: 1``)::

    schema_version: 1
    id: conquer_default             # stable id, stored with each timepoint
    title: ...                       # free text
    arms: [A, B]                     # every arm the protocol knows
    lookahead_days: 35               # recurring rules: create occurrences whose
                                     # window starts <= today + lookahead_days
    study_end_days: null             # optional: recurring rules stop at
                                     # randomization + N days
    open_forms_at_end: not_expected  # optional: forms still open on the day a
                                     # patient died, withdrew or was lost become
                                     # not expected (default), or stay expected
                                     # for staff entry: staff_entry
    defaults:
      grace_days: {questionnaire: 3, diary: 1}
      cycle_length_days: 21          # when a systemic cycle has no length
    rules:
      - id: after_systemic_cycle     # unique; stored as rule_id
        kind: questionnaire          # questionnaire | diary
        anchor: systemic_cycle       # randomization | intrathecal_dose |
                                     # systemic_cycle | progression | end_of_treatment
        arms: both                   # both | all | [A] ...
        instruments: [eortc_qlq_c30, eortc_qlq_bn20, eq5d5l]
        key: "sys-c{n}"              # {n}: event number; {k}: occurrence (repeat)
        target: {offset_days: cycle_length}   # int, or cycle_length (systemic only)
        window: {before: 3, after: 3}
        grace_days: 3                # optional, else defaults.grace_days[kind]
        repeat: {every_days: 28, max_count: null}   # optional (questionnaires)
      - id: nadir_diary
        kind: diary                  # one form per local day, keyed diary-YYYY-MM-DD;
        anchor: systemic_cycle       # no key/target/window: the window is the day
        arms: both
        instruments: [symptom_diary]
        days: {first: 7, last: 14}   # days after the anchor date, inclusive
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, cast

import yaml

from qol_app.paths import QUESTIONNAIRE_DIR

__all__ = [
    "ANCHOR_KINDS",
    "EVENT_KINDS",
    "REPEATABLE_ANCHORS",
    "SCHEDULES_DIR",
    "DayRange",
    "Repeat",
    "Rule",
    "Schedule",
    "ScheduleError",
    "Target",
    "Window",
    "load_schedule",
    "parse_schedule",
]

AnchorKind = Literal["randomization", "intrathecal_dose", "systemic_cycle", "progression", "end_of_treatment"]
TimepointKind = Literal["questionnaire", "diary"]

ANCHOR_KINDS: Final[tuple[str, ...]] = (
    "randomization",
    "intrathecal_dose",
    "systemic_cycle",
    "progression",
    "end_of_treatment",
)
#: Anchors recorded by staff as events (randomization comes from enrolment).
EVENT_KINDS: Final[tuple[str, ...]] = ANCHOR_KINDS[1:]
#: Anchors that can occur many times per patient, so keys need ``{n}``.
REPEATABLE_ANCHORS: Final[frozenset[str]] = frozenset({"intrathecal_dose", "systemic_cycle", "progression"})
TIMEPOINT_KINDS: Final[tuple[str, ...]] = ("questionnaire", "diary")
CYCLE_LENGTH: Final = "cycle_length"
LAST_CYCLE_DAY: Final = "last"
SCHEMA_VERSIONS: Final[tuple[int, ...]] = (1, 2)
SCHEMA_VERSION: Final = 2

#: Where the shipped schedules live (``qol_app/questionnaires/schedules``).
SCHEDULES_DIR: Final[Path] = QUESTIONNAIRE_DIR / "schedules"

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_ARM_RE = re.compile(r"^[A-Za-z0-9_]+$")
_KEY_TEXT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_KEY_FIELDS: Final[frozenset[str]] = frozenset({"n", "k"})
DIARY_KEY_PREFIX: Final = "diary-"


OPEN_FORMS_AT_END = ("not_expected", "staff_entry")


class ScheduleError(ValueError):
    """A schedule file is invalid; the message starts with ``<file>: <field>:``."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")


@dataclass(frozen=True, slots=True)
class Window:
    """Days before/after the target that still count as on time (inclusive)."""

    before: int
    after: int
    #: End the window (and its grace) no later than the day before the next recorded
    #: administration of the anchor's kind (systemic cycles, format 2).
    until_next_cycle: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """Target day relative to the anchor date.

    ``from_cycle_length`` makes the offset the cycle's own length, so a 14- or
    28-day cycle (or a per-patient length) moves the post-cycle assessment to
    the day the next cycle would start.
    """

    offset_days: int
    from_cycle_length: bool = False
    #: Format 2: cycle day N (day 1 = administration day), so the offset is N - 1.
    cycle_day: int | None = None
    #: Format 2: the cycle's last day (its length), e.g. day 21 of a 21-day cycle.
    last_cycle_day: bool = False

    def offset(self, cycle_length: int) -> int:
        """Days from the anchor date to the target, for a cycle of ``cycle_length`` days."""
        if self.last_cycle_day:
            return cycle_length - 1
        if self.cycle_day is not None:
            return self.cycle_day - 1
        if self.from_cycle_length:  # format 1: "cycle_length" meant anchor + length
            return cycle_length
        return self.offset_days


@dataclass(frozen=True, slots=True)
class DayRange:
    """Diary days ``first..last`` after the anchor date, inclusive (0 = event day)."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Repeat:
    """Occurrence k (1-based) targets ``offset + (k-1) * every_days``."""

    every_days: int
    max_count: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of the protocol's schedule table."""

    id: str
    kind: TimepointKind
    anchor: AnchorKind
    arms: frozenset[str]
    instruments: tuple[str, ...]
    grace_days: int
    cycle_length_days: int
    key: str | None = None
    target: Target | None = None
    window: Window | None = None
    days: DayRange | None = None
    repeat: Repeat | None = None
    description: str = ""

    def applies_to(self, arm: str) -> bool:
        """Whether patients in ``arm`` get this rule's timepoints."""
        return arm in self.arms


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated protocol schedule; rules keep file order (used for tie-breaks)."""

    id: str
    title: str
    source: str
    arms: tuple[str, ...]
    lookahead_days: int
    study_end_days: int | None
    rules: tuple[Rule, ...]
    #: Forms whose window (grace included) holds the end-status date: ``not_expected``, or
    #: ``staff_entry`` (they stay expected; only staff can complete them, the patient is signed out).
    open_forms_at_end: str = "not_expected"
    #: The protocol version of this file (format 2 ``version``; "1" for format 1 files).
    version: str = "1"

    @property
    def version_label(self) -> str:
        """``id@version``: what every timepoint created from this file stores."""
        return f"{self.id}@{self.version}"

    def rule(self, rule_id: str) -> Rule:
        """Return the rule ``rule_id``; KeyError if absent."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


# --------------------------------------------------------------------------- loading


class _DuplicateKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last silently)."""


def _construct_mapping(loader: _DuplicateKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_DuplicateKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_schedule(path: str | Path, *, known_instruments: Collection[str] | None = None) -> Schedule:
    """Read and validate a schedule file.

    ``known_instruments``, when given (the instrument registry's ids), makes an
    unknown instrument id an error instead of a runtime surprise.
    Raises :class:`ScheduleError` naming the file and field.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScheduleError(source, "", f"cannot read file: {exc.strerror or exc}") from exc
    try:
        data = yaml.load(text, Loader=_DuplicateKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ScheduleError(source, "", f"invalid YAML: {exc}") from exc
    return parse_schedule(data, source=source, known_instruments=known_instruments)


def parse_schedule(data: object, *, source: str, known_instruments: Collection[str] | None = None) -> Schedule:
    """Validate already-parsed YAML/JSON data; ``source`` names it in errors."""
    return _Parser(source, known_instruments).schedule(data)


class _Parser:
    """Walks the raw data, keeping the dotted field path for error messages."""

    def __init__(self, source: str, known_instruments: Collection[str] | None) -> None:
        self.source = source
        self.known = frozenset(known_instruments) if known_instruments is not None else None
        self.format = SCHEMA_VERSION

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ScheduleError(self.source, field, problem)

    # -- primitives ---------------------------------------------------------------

    def mapping(
        self,
        value: object,
        field: str,
        *,
        required: Collection[str] = (),
        optional: Collection[str] = (),
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(field or "(top level)", f"must be a mapping, got {_kind(value)}")
        allowed = set(required) | set(optional)
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                self.fail(_join(field, str(key)), f"unknown field (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                self.fail(_join(field, key), "required field is missing")
        return cast(Mapping[str, Any], value)

    def integer(self, value: object, field: str, *, minimum: int) -> int:
        # bool is an int subclass; YAML 'yes' must not become 1.
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be an integer, got {_kind(value)}")
        if value < minimum:
            self.fail(field, f"must be >= {minimum}, got {value}")
        return value

    def optional_integer(self, value: object, field: str, *, minimum: int) -> int | None:
        return None if value is None else self.integer(value, field, minimum=minimum)

    def text(self, value: object, field: str, *, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(field, f"must be a non-empty string, got {_kind(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(field, f"{value!r} does not match {pattern.pattern}")
        return value

    def choice(self, value: object, field: str, choices: Sequence[str]) -> str:
        if value not in choices:
            self.fail(field, f"must be one of {', '.join(choices)}, got {value!r}")
        return cast(str, value)

    # -- structure ----------------------------------------------------------------

    def schedule(self, data: object) -> Schedule:
        top = self.mapping(
            data,
            "",
            required=("schema_version", "id", "arms", "lookahead_days", "rules"),
            optional=("title", "study_end_days", "defaults", "description", "open_forms_at_end", "version"),
        )
        format_version = self.integer(top["schema_version"], "schema_version", minimum=1)
        if format_version not in SCHEMA_VERSIONS:
            self.fail(
                "schema_version",
                f"unsupported version {format_version} (this code reads {', '.join(map(str, SCHEMA_VERSIONS))})",
            )
        self.format = format_version
        if "version" in top:
            raw_version = top["version"]
            if isinstance(raw_version, bool) or not isinstance(raw_version, (str, int)):
                self.fail("version", f"must be a string, got {_kind(raw_version)}")
            protocol_version = self.text(str(raw_version), "version", pattern=_VERSION_RE)
        elif format_version >= 2:
            self.fail("version", "required field is missing")
        else:
            protocol_version = "1"
        schedule_id = self.text(top["id"], "id", pattern=_ID_RE)
        title = self.text(top["title"], "title") if "title" in top else schedule_id
        arms = self.arm_list(top["arms"], "arms")
        lookahead = self.integer(top["lookahead_days"], "lookahead_days", minimum=0)
        study_end = self.optional_integer(top.get("study_end_days"), "study_end_days", minimum=1)
        grace_defaults, cycle_default = self.defaults(top.get("defaults", {}))
        open_at_end = self.choice(top.get("open_forms_at_end", "not_expected"), "open_forms_at_end", OPEN_FORMS_AT_END)

        raw_rules = top["rules"]
        if not isinstance(raw_rules, list) or not raw_rules:
            self.fail("rules", f"must be a non-empty list, got {_kind(raw_rules)}")
        rules: list[Rule] = []
        seen_ids: dict[str, int] = {}
        seen_keys: dict[str, str] = {}
        for index, raw in enumerate(raw_rules):
            field = f"rules[{index}]"
            rule = self.rule(raw, field, arms, grace_defaults, cycle_default)
            if rule.id in seen_ids:
                self.fail(_join(field, "id"), f"duplicate rule id {rule.id!r} (also rules[{seen_ids[rule.id]}])")
            seen_ids[rule.id] = index
            if rule.key is not None:
                if rule.key in seen_keys:
                    self.fail(
                        _join(field, "key"),
                        f"key template {rule.key!r} already used by rule {seen_keys[rule.key]!r}",
                    )
                seen_keys[rule.key] = rule.id
            rules.append(rule)
        return Schedule(
            id=schedule_id,
            title=title,
            source=self.source,
            arms=arms,
            lookahead_days=lookahead,
            study_end_days=study_end,
            rules=tuple(rules),
            open_forms_at_end=open_at_end,
            version=protocol_version,
        )

    def defaults(self, value: object) -> tuple[dict[str, int], int]:
        raw = self.mapping(value, "defaults", optional=("grace_days", "cycle_length_days"))
        grace = {"questionnaire": 3, "diary": 1}
        if "grace_days" in raw:
            graw = self.mapping(raw["grace_days"], "defaults.grace_days", optional=TIMEPOINT_KINDS)
            for kind, days in graw.items():
                grace[kind] = self.integer(days, f"defaults.grace_days.{kind}", minimum=0)
        cycle = 21
        if "cycle_length_days" in raw:
            cycle = self.integer(raw["cycle_length_days"], "defaults.cycle_length_days", minimum=1)
        return grace, cycle

    def arm_list(self, value: object, field: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.fail(field, f"must be a non-empty list of arm codes, got {_kind(value)}")
        arms = tuple(self.text(arm, f"{field}[{i}]", pattern=_ARM_RE) for i, arm in enumerate(value))
        if len(set(arms)) != len(arms):
            self.fail(field, "lists an arm twice")
        return arms

    def rule_arms(self, value: object, field: str, arms: tuple[str, ...]) -> frozenset[str]:
        if value in ("both", "all"):
            return frozenset(arms)
        chosen = self.arm_list(value, field)
        for i, arm in enumerate(chosen):
            if arm not in arms:
                self.fail(f"{field}[{i}]", f"unknown arm {arm!r} (schedule arms: {', '.join(arms)})")
        return frozenset(chosen)

    def instruments(self, value: object, field: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.fail(field, f"must be a non-empty list of instrument ids, got {_kind(value)}")
        ids = tuple(self.text(item, f"{field}[{i}]", pattern=_ID_RE) for i, item in enumerate(value))
        if len(set(ids)) != len(ids):
            self.fail(field, "lists an instrument twice")
        if self.known is not None:
            for i, item in enumerate(ids):
                if item not in self.known:
                    self.fail(f"{field}[{i}]", f"unknown instrument {item!r}")
        return ids

    def key_template(self, value: object, field: str, anchor: str, repeats: bool) -> str:
        key = self.text(value, field)
        try:
            parts = list(string.Formatter().parse(key))
        except ValueError as exc:
            self.fail(field, f"invalid template {key!r}: {exc}")
        names = {name for _, name, spec, conv in parts if name is not None}
        if any(spec or conv for _, name, spec, conv in parts if name is not None):
            self.fail(field, f"placeholders in {key!r} take no format spec or conversion")
        unknown = names - _KEY_FIELDS
        if unknown:
            self.fail(field, f"unknown placeholder(s) {sorted(unknown)} (allowed: {{n}}, {{k}})")
        sample = key.format(n=1, k=1)
        if not _KEY_TEXT_RE.fullmatch(sample):
            self.fail(field, f"{key!r} must give lower-case letters, digits, '-' or '_'")
        if sample.startswith(DIARY_KEY_PREFIX):
            self.fail(field, f"keys starting with {DIARY_KEY_PREFIX!r} are reserved for diaries")
        if anchor in REPEATABLE_ANCHORS and "n" not in names:
            self.fail(field, f"anchor {anchor} can occur many times, so the key needs {{n}}")
        if repeats and "k" not in names:
            self.fail(field, "a repeating rule needs {k} (the occurrence number) in its key")
        if not repeats and "k" in names:
            self.fail(field, "{k} is only meaningful with repeat")
        return key

    def rule(
        self,
        raw: object,
        field: str,
        arms: tuple[str, ...],
        grace_defaults: Mapping[str, int],
        cycle_default: int,
    ) -> Rule:
        common = ("id", "kind", "anchor", "arms", "instruments")
        shared_optional = ("grace_days", "description", "cycle_length_days")
        kind_value = raw.get("kind") if isinstance(raw, Mapping) else None
        if kind_value == "diary":
            day_field = "cycle_days" if isinstance(raw, Mapping) and "cycle_days" in raw else "days"
            body = self.mapping(raw, field, required=(*common, day_field), optional=shared_optional)
        else:
            body = self.mapping(
                raw,
                field,
                required=(*common, "key", "target", "window"),
                optional=(*shared_optional, "repeat"),
            )
        rule_id = self.text(body["id"], _join(field, "id"), pattern=_ID_RE)
        kind = cast(TimepointKind, self.choice(body["kind"], _join(field, "kind"), TIMEPOINT_KINDS))
        anchor = cast(AnchorKind, self.choice(body["anchor"], _join(field, "anchor"), ANCHOR_KINDS))
        grace = (
            self.integer(body["grace_days"], _join(field, "grace_days"), minimum=0)
            if "grace_days" in body
            else grace_defaults[kind]
        )
        cycle_length = (
            self.integer(body["cycle_length_days"], _join(field, "cycle_length_days"), minimum=1)
            if "cycle_length_days" in body
            else cycle_default
        )
        description = body.get("description", "")
        if not isinstance(description, str):
            self.fail(_join(field, "description"), f"must be a string, got {_kind(description)}")
        common_values: dict[str, Any] = {
            "id": rule_id,
            "kind": kind,
            "anchor": anchor,
            "arms": self.rule_arms(body["arms"], _join(field, "arms"), arms),
            "instruments": self.instruments(body["instruments"], _join(field, "instruments")),
            "grace_days": grace,
            "cycle_length_days": cycle_length,
            "description": description,
        }
        if kind == "diary":
            if "cycle_days" in body:
                self.cycle_day_feature(field, "cycle_days", anchor)
                days_raw = self.mapping(body["cycle_days"], _join(field, "cycle_days"), required=("first", "last"))
                first = self.integer(days_raw["first"], _join(field, "cycle_days.first"), minimum=1)
                last = self.integer(days_raw["last"], _join(field, "cycle_days.last"), minimum=first)
                return Rule(**common_values, days=DayRange(first - 1, last - 1))  # cycle day N = anchor + N - 1
            days_raw = self.mapping(body["days"], _join(field, "days"), required=("first", "last"))
            first = self.integer(days_raw["first"], _join(field, "days.first"), minimum=0)
            last = self.integer(days_raw["last"], _join(field, "days.last"), minimum=first)
            return Rule(**common_values, days=DayRange(first, last))

        repeat: Repeat | None = None
        if body.get("repeat") is not None:
            rraw = self.mapping(
                body["repeat"], _join(field, "repeat"), required=("every_days",), optional=("max_count",)
            )
            repeat = Repeat(
                every_days=self.integer(rraw["every_days"], _join(field, "repeat.every_days"), minimum=1),
                max_count=self.optional_integer(rraw.get("max_count"), _join(field, "repeat.max_count"), minimum=1),
            )
        traw = self.mapping(body["target"], _join(field, "target"), optional=("offset_days", "cycle_day"))
        if ("offset_days" in traw) == ("cycle_day" in traw):
            self.fail(_join(field, "target"), "give exactly one of offset_days, cycle_day")
        offset = traw.get("offset_days")
        if "cycle_day" in traw:
            self.cycle_day_feature(field, "target.cycle_day", anchor)
            day = traw["cycle_day"]
            if day == LAST_CYCLE_DAY:
                target = Target(offset_days=0, last_cycle_day=True)
            else:
                day = self.integer(day, _join(field, "target.cycle_day"), minimum=1)
                target = Target(offset_days=day - 1, cycle_day=day)
        elif offset == CYCLE_LENGTH:
            if anchor != "systemic_cycle":
                self.fail(
                    _join(field, "target.offset_days"),
                    "cycle_length is only valid with anchor systemic_cycle",
                )
            target = Target(offset_days=0, from_cycle_length=True)
        else:
            if isinstance(offset, bool) or not isinstance(offset, int):
                self.fail(
                    _join(field, "target.offset_days"),
                    f"must be an integer or {CYCLE_LENGTH!r}, got {_kind(offset)}",
                )
            target = Target(offset_days=offset)
        wraw = self.mapping(
            body["window"], _join(field, "window"), required=("before", "after"), optional=("until_next_cycle",)
        )
        until_next = wraw.get("until_next_cycle", False)
        if not isinstance(until_next, bool):
            self.fail(_join(field, "window.until_next_cycle"), f"must be true or false, got {_kind(until_next)}")
        if until_next:
            self.cycle_day_feature(field, "window.until_next_cycle", anchor)
        window = Window(
            before=self.integer(wraw["before"], _join(field, "window.before"), minimum=0),
            after=self.integer(wraw["after"], _join(field, "window.after"), minimum=0),
            until_next_cycle=until_next,
        )
        key = self.key_template(body["key"], _join(field, "key"), anchor, repeat is not None)
        return Rule(**common_values, key=key, target=target, window=window, repeat=repeat)

    def cycle_day_feature(self, field: str, name: str, anchor: str) -> None:
        if self.format < 2:
            self.fail(_join(field, name), "cycle days need schema_version: 2")
        if anchor != "systemic_cycle":
            self.fail(_join(field, name), "cycle days are only valid with anchor systemic_cycle")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:80]
