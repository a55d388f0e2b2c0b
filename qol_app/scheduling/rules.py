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
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from qol_app.datafile import Node, read_file
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

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_ARM_RE = re.compile(r"^[A-Za-z0-9_]+$")
_KEY_TEXT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_KEY_FIELDS: Final[frozenset[str]] = frozenset({"n", "k"})
DIARY_KEY_PREFIX: Final = "diary-"


OPEN_FORMS_AT_END = ("not_expected", "staff_entry")
#: Grace days per kind when ``defaults.grace_days`` does not say.
DEFAULT_GRACE_DAYS: Final[Mapping[str, int]] = {"questionnaire": 3, "diary": 1}


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


def load_schedule(path: str | Path, *, known_instruments: Collection[str] | None = None) -> Schedule:
    """Read and validate a schedule file.

    ``known_instruments``, when given (the instrument registry's ids), makes an
    unknown instrument id an error instead of a runtime surprise.
    Raises :class:`~qol_app.datafile.DataFileError` naming the file (``path`` as given) and field.
    """
    return _Parser(str(path), known_instruments).schedule(read_file(path))


def parse_schedule(data: object, *, source: str, known_instruments: Collection[str] | None = None) -> Schedule:
    """Validate already-parsed YAML/JSON data; ``source`` names it in errors."""
    return _Parser(source, known_instruments).schedule(Node(source, "", data))


class _Parser:
    """The checks a ``Node`` cannot make alone: formats, arms, instruments, key templates."""

    def __init__(self, source: str, known_instruments: Collection[str] | None) -> None:
        self.source = source
        self.known = frozenset(known_instruments) if known_instruments is not None else None
        self.format = SCHEMA_VERSION

    def schedule(self, root: Node) -> Schedule:
        top = root.fields(
            ("schema_version", "id", "arms", "lookahead_days", "rules"),
            ("version", "title", "description", "study_end_days", "open_forms_at_end", "defaults"),
        )
        self.format = top["schema_version"].as_int(minimum=1)
        if self.format not in SCHEMA_VERSIONS:
            top["schema_version"].fail(
                f"unsupported version {self.format} (this code reads {', '.join(map(str, SCHEMA_VERSIONS))})"
            )
        if "version" in top:
            version_node = top["version"]
            if isinstance(version_node.value, int) and not isinstance(version_node.value, bool):
                version_node = Node(version_node.file, version_node.path, str(version_node.value))  # version: 2
            protocol_version = version_node.as_str(_VERSION_RE)
        elif self.format >= 2:
            root.with_key("version").fail("missing required field")
        else:
            protocol_version = "1"
        schedule_id = top["id"].ident()
        title = top["title"].as_str() if "title" in top else schedule_id
        arms = self.arm_list(top["arms"])
        lookahead = top["lookahead_days"].as_int(minimum=0)
        study_end = top.get("study_end_days")
        study_end_days = None if study_end is None or study_end.value is None else study_end.as_int(minimum=1)
        open_at_end = top["open_forms_at_end"].choice(OPEN_FORMS_AT_END) if "open_forms_at_end" in top else None
        grace_defaults, cycle_default = self.defaults(top["defaults"]) if "defaults" in top else ({}, 21)
        rules: list[Rule] = []
        seen_ids: dict[str, int] = {}
        seen_keys: dict[str, str] = {}
        for index, node in enumerate(top["rules"].as_list(min_len=1)):
            rule = self.rule(node, arms, grace_defaults, cycle_default)
            if rule.id in seen_ids:
                node.child("id").fail(f"duplicate rule id {rule.id!r} (also rules[{seen_ids[rule.id]}])")
            seen_ids[rule.id] = index
            if rule.key is not None:
                if rule.key in seen_keys:
                    node.child("key").fail(f"key template {rule.key!r} already used by rule {seen_keys[rule.key]!r}")
                seen_keys[rule.key] = rule.id
            rules.append(rule)
        return Schedule(
            id=schedule_id,
            title=title,
            source=self.source,
            arms=arms,
            lookahead_days=lookahead,
            study_end_days=study_end_days,
            rules=tuple(rules),
            open_forms_at_end=open_at_end or "not_expected",
            version=protocol_version,
        )

    def defaults(self, node: Node) -> tuple[dict[str, int], int]:
        raw = node.fields((), ("grace_days", "cycle_length_days"))
        grace = {kind: days.as_int(minimum=0) for kind, days in _fields(raw, "grace_days", TIMEPOINT_KINDS).items()}
        cycle = raw["cycle_length_days"].as_int(minimum=1) if "cycle_length_days" in raw else 21
        return grace, cycle

    def arm_list(self, node: Node) -> tuple[str, ...]:
        arms = tuple(arm.as_str(_ARM_RE) for arm in node.as_list(min_len=1))
        if len(set(arms)) != len(arms):
            node.fail("lists an arm twice")
        return arms

    def rule_arms(self, node: Node, arms: tuple[str, ...]) -> frozenset[str]:
        if node.value in ("both", "all"):
            return frozenset(arms)
        chosen = self.arm_list(node)
        for i, arm in enumerate(chosen):
            if arm not in arms:
                node.at(i).fail(f"unknown arm {arm!r} (schedule arms: {', '.join(arms)})")
        return frozenset(chosen)

    def instruments(self, node: Node) -> tuple[str, ...]:
        entries = node.as_list(min_len=1)
        ids = tuple(entry.ident() for entry in entries)
        if len(set(ids)) != len(ids):
            node.fail("lists an instrument twice")
        for entry, item in zip(entries, ids, strict=True):
            if self.known is not None and item not in self.known:
                entry.fail(f"unknown instrument {item!r}")
        return ids

    def key_template(self, node: Node, anchor: str, repeats: bool) -> str:
        key = node.as_str()
        try:
            parts = list(string.Formatter().parse(key))
        except ValueError as exc:
            node.fail(f"invalid template {key!r}: {exc}")
        names = {name for _, name, spec, conv in parts if name is not None}
        if any(spec or conv for _, name, spec, conv in parts if name is not None):
            node.fail(f"placeholders in {key!r} take no format spec or conversion")
        unknown = names - _KEY_FIELDS
        if unknown:
            node.fail(f"unknown placeholder(s) {sorted(unknown)} (allowed: {{n}}, {{k}})")
        sample = key.format(n=1, k=1)
        if not _KEY_TEXT_RE.fullmatch(sample):
            node.fail(f"{key!r} must give lower-case letters, digits, '-' or '_'")
        if sample.startswith(DIARY_KEY_PREFIX):
            node.fail(f"keys starting with {DIARY_KEY_PREFIX!r} are reserved for diaries")
        if anchor in REPEATABLE_ANCHORS and "n" not in names:
            node.fail(f"anchor {anchor} can occur many times, so the key needs {{n}}")
        if repeats and "k" not in names:
            node.fail("a repeating rule needs {k} (the occurrence number) in its key")
        if not repeats and "k" in names:
            node.fail("{k} is only meaningful with repeat")
        return key

    def rule(self, node: Node, arms: tuple[str, ...], grace_defaults: Mapping[str, int], cycle_default: int) -> Rule:
        common = ("id", "kind", "anchor", "arms", "instruments")
        optional = ("description", "grace_days", "cycle_length_days")
        raw = node.value if isinstance(node.value, Mapping) else {}
        if raw.get("kind") == "diary":
            body = node.fields((*common, "cycle_days" if "cycle_days" in raw else "days"), optional)
        else:
            body = node.fields((*common, "key", "target", "window"), (*optional, "repeat"))
        rule_id = body["id"].ident()
        kind = cast(TimepointKind, body["kind"].choice(TIMEPOINT_KINDS))
        anchor = cast(AnchorKind, body["anchor"].choice(ANCHOR_KINDS))
        description = body.get("description")
        if description is not None and not isinstance(description.value, str):
            description.fail(f"expected string, got {type(description.value).__name__}")
        values: dict[str, Any] = {
            "id": rule_id,
            "kind": kind,
            "anchor": anchor,
            "arms": self.rule_arms(body["arms"], arms),
            "instruments": self.instruments(body["instruments"]),
            "grace_days": body["grace_days"].as_int(minimum=0)
            if "grace_days" in body
            else grace_defaults.get(kind, DEFAULT_GRACE_DAYS[kind]),
            "cycle_length_days": body["cycle_length_days"].as_int(minimum=1)
            if "cycle_length_days" in body
            else cycle_default,
            "description": "" if description is None else description.value,
        }
        if kind == "diary":
            if "cycle_days" in body:
                self.cycle_day_feature(body["cycle_days"], anchor)
                first, last = self.day_range(body["cycle_days"], minimum=1)
                return Rule(**values, days=DayRange(first - 1, last - 1))  # cycle day N = anchor + N - 1
            first, last = self.day_range(body["days"], minimum=0)
            return Rule(**values, days=DayRange(first, last))

        repeat: Repeat | None = None
        if "repeat" in body and body["repeat"].value is not None:
            rraw = body["repeat"].fields(("every_days",), ("max_count",))
            max_count = rraw.get("max_count")
            repeat = Repeat(
                every_days=rraw["every_days"].as_int(minimum=1),
                max_count=None if max_count is None or max_count.value is None else max_count.as_int(minimum=1),
            )
        target = self.target(body["target"], anchor)
        wraw = body["window"].fields(("before", "after"), ("until_next_cycle",))
        until_next = wraw["until_next_cycle"].as_bool() if "until_next_cycle" in wraw else False
        if until_next:
            self.cycle_day_feature(wraw["until_next_cycle"], anchor)
        window = Window(wraw["before"].as_int(minimum=0), wraw["after"].as_int(minimum=0), until_next)
        key = self.key_template(body["key"], anchor, repeat is not None)
        return Rule(**values, key=key, target=target, window=window, repeat=repeat)

    def target(self, node: Node, anchor: str) -> Target:
        raw = node.fields((), ("offset_days", "cycle_day"))
        if ("offset_days" in raw) == ("cycle_day" in raw):
            node.fail("give exactly one of offset_days, cycle_day")
        if "cycle_day" in raw:
            day = raw["cycle_day"]
            self.cycle_day_feature(day, anchor)
            if day.value == LAST_CYCLE_DAY:
                return Target(offset_days=0, last_cycle_day=True)
            number = day.as_int(minimum=1)
            return Target(offset_days=number - 1, cycle_day=number)
        offset = raw["offset_days"]
        if offset.value == CYCLE_LENGTH:
            if anchor != "systemic_cycle":
                offset.fail("cycle_length is only valid with anchor systemic_cycle")
            return Target(offset_days=0, from_cycle_length=True)
        if isinstance(offset.value, bool) or not isinstance(offset.value, int):
            offset.fail(f"expected integer or {CYCLE_LENGTH!r}, got {type(offset.value).__name__}")
        return Target(offset_days=offset.value)

    def day_range(self, node: Node, *, minimum: int) -> tuple[int, int]:
        raw = node.fields(("first", "last"))
        first = raw["first"].as_int(minimum=minimum)
        return first, raw["last"].as_int(minimum=first)

    def cycle_day_feature(self, node: Node, anchor: str) -> None:
        if self.format < 2:
            node.fail("cycle days need schema_version: 2")
        if anchor != "systemic_cycle":
            node.fail("cycle days are only valid with anchor systemic_cycle")


def _fields(raw: Mapping[str, Node], name: str, allowed: tuple[str, ...]) -> dict[str, Node]:
    return raw[name].fields((), allowed) if name in raw else {}
