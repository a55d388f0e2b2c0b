"""Instrument definitions as immutable values.

The YAML files in ``qol_app/questionnaires/`` are parsed into these dataclasses by
``loader.py``; nothing here reads files. Texts are kept per locale in read-only
mappings and are never looked up with a fallback language: a form shown in the
wrong language is worse than an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from qol_app.datafile import Text, frozen_text

__all__ = ["Text", "frozen_text"]  # re-exported: defined with the file reader (qol_app.datafile)

ItemKind = Literal["choice", "number", "vas"]
Grading = Literal["severity", "frequency"]
ScaleType = Literal["functional", "symptom", "global", "summary", "index", "vas", "item", "worst"]
Formula = Literal["functional", "symptom"]
Wording = Literal["own_descriptive", "original"]

ITEM_KINDS: tuple[str, ...] = ("choice", "number", "vas")
GRADINGS: tuple[str, ...] = ("severity", "frequency")
SCALE_TYPES: tuple[str, ...] = (
    "functional",
    "symptom",
    "global",
    "summary",
    "index",
    "vas",
    "item",
    "worst",
)
FORMULAS: tuple[str, ...] = ("functional", "symptom")
WORDINGS: tuple[str, ...] = ("own_descriptive", "original")

#: Scale types scored by the one generic EORTC linear transformation.
EORTC_TYPES: frozenset[str] = frozenset({"functional", "symptom", "global"})

#: Direction of each scale type when the YAML does not say otherwise.
HIGHER_IS_BETTER_BY_TYPE: Mapping[str, bool] = MappingProxyType(
    {
        "functional": True,
        "global": True,
        "summary": True,
        "index": True,
        "vas": True,
        "symptom": False,
        "item": False,
        "worst": False,
    }
)


class MissingLanguageError(ValueError):
    """Instrument text is not available in the requested locale (never falls back)."""


@dataclass(frozen=True)
class Option:
    """One response option of a choice item; ``code`` is what is stored and scored."""

    code: int
    label: Text


@dataclass(frozen=True)
class Item:
    """One question.

    ``choice`` items store an integer ``code`` from ``options``; ``number``
    items a decimal within ``[min, max]`` (``step`` and ``unit`` are display
    hints); ``vas`` items an integer within ``[min, max]`` with end ``anchors``.
    ``optional`` items need not be prompted for (every item may be skipped).
    ``grading`` marks severity/frequency items (worst-severity, alerts);
    ``tags`` carry display conditions such as ``ommaya`` (only for patients
    with a reservoir).
    """

    id: str
    kind: ItemKind
    text: Text
    options: tuple[Option, ...] = ()
    option_set: str | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    unit: str | None = None
    anchors: tuple[Text, Text] | None = None
    optional: bool = False
    grading: Grading | None = None
    tags: tuple[str, ...] = ()
    #: Option codes in display order (empty for non-choice items).
    codes: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())
    #: The same codes as a set, for fast membership tests while scoring.
    code_set: frozenset[int] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        codes = tuple(option.code for option in self.options)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "code_set", frozenset(codes))


@dataclass(frozen=True)
class Page:
    """A short screen of items, mirroring the paper form's grouping."""

    id: str
    title: Text
    items: tuple[str, ...]
    #: The title when the page's tagged items are not shown (e.g. no Ommaya reservoir).
    title_untagged: Text | None = None


@dataclass(frozen=True)
class Condition:
    """A scale is not applicable when ``item``'s answer is one of ``values``."""

    item: str
    values: frozenset[int]


@dataclass(frozen=True)
class Scale:
    """A score computed from items (or from other scales, for ``summary``).

    ``type`` picks the scoring method: functional/symptom/global use the EORTC
    linear transformation with ``formula`` and ``range``; ``summary`` averages
    ``components`` and ``100 - inverted_components``; ``index`` applies the
    named ``value_set``; ``vas`` and ``item`` report one item as is; ``worst``
    is the maximum answered code of its items.
    """

    code: str
    name: Text
    type: ScaleType
    items: tuple[str, ...]
    higher_is_better: bool
    formula: Formula | None = None
    range: float | None = None
    components: tuple[str, ...] = ()
    inverted_components: tuple[str, ...] = ()
    value_set: str | None = None
    not_applicable_if: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class ValueSet:
    """Additive preference weights turning an EQ-5D profile into an index.

    index = 1 - (``constant`` if any level > 1) - sum of ``decrements``.
    ``checks`` are published profile -> index pairs verified at load time.
    """

    name: str
    instrument: str
    title: str
    source: str
    dimensions: tuple[str, ...]
    decrements: Mapping[str, Mapping[int, float]]
    constant: float = 0.0
    checks: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def index(self, levels: Mapping[str, int]) -> float:
        """Index for a complete profile (``levels`` keyed by dimension)."""
        total = sum(self.decrements[dim][levels[dim]] for dim in self.dimensions)
        if self.constant and any(levels[dim] > 1 for dim in self.dimensions):
            total += self.constant
        return 1.0 - total

    @property
    def minimum(self) -> float:
        """Worst attainable index (all dimensions at their worst level)."""
        worst = {dim: max(self.decrements[dim]) for dim in self.dimensions}
        return self.index(worst)


@dataclass(frozen=True)
class Instrument:
    """A validated questionnaire: structure, own wording and scales.

    ``wording`` is ``own_descriptive`` when the shipped texts are the project's
    short paraphrases of a licensed instrument (EORTC, EQ-5D), ``original``
    when the project owns the instrument. Sites load licensed wording as an
    overlay (see ``qol_app.instruments.wording``).
    """

    id: str
    version: str
    name: Text
    instructions: Text
    languages: tuple[str, ...]
    wording: Wording
    pages: tuple[Page, ...]
    items: tuple[Item, ...]
    scales: tuple[Scale, ...]
    option_sets: Mapping[str, tuple[Option, ...]] = field(default_factory=lambda: MappingProxyType({}))
    source_file: str = ""
    #: Added to an item's position for the number printed on the paper form (BN20 after the
    #: C30: 30, so its q1 is printed as 31).
    paper_number_offset: int = 0
    _items_by_id: Mapping[str, Item] = field(init=False, repr=False, compare=False, default_factory=dict)
    _scales_by_code: Mapping[str, Scale] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        # Frozen: indexes are built once here, through object.__setattr__.
        object.__setattr__(self, "_items_by_id", MappingProxyType({item.id: item for item in self.items}))
        object.__setattr__(self, "_scales_by_code", MappingProxyType({scale.code: scale for scale in self.scales}))

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(item.id for item in self.items)

    @property
    def wording_version(self) -> str:
        """Version label of the shipped texts, e.g. ``own-descriptive:3.0``."""
        return f"{self.wording.replace('_', '-')}:{self.version}"

    def item(self, item_id: str) -> Item:
        """The item with this id; ``ValueError`` naming an unknown id."""
        try:
            return self._items_by_id[item_id]
        except KeyError:
            raise ValueError(f"{self.id}: unknown item id {item_id!r}") from None

    def has_item(self, item_id: str) -> bool:
        return item_id in self._items_by_id

    def scale(self, code: str) -> Scale:
        """The scale with this code; ``ValueError`` naming an unknown code."""
        try:
            return self._scales_by_code[code]
        except KeyError:
            raise ValueError(f"{self.id}: unknown scale {code!r}") from None

    def page(self, page_id: str) -> Page:
        for page in self.pages:
            if page.id == page_id:
                return page
        raise ValueError(f"{self.id}: unknown page {page_id!r}")
