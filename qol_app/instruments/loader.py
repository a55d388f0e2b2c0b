"""Load and validate questionnaire files into a registry of instruments.

Validation happens once, at load time, so the rest of the app can trust an
``Instrument``: every error names the file and the field path. Unknown keys are
errors too (a typo such as ``zh_hans`` must not silently drop a language).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from qol_app.datafile import DataFileError, Node, read_file, read_yaml
from qol_app.instruments.schema import (
    EORTC_TYPES,
    FORMULAS,
    GRADINGS,
    HIGHER_IS_BETTER_BY_TYPE,
    ITEM_KINDS,
    SCALE_TYPES,
    WORDINGS,
    Condition,
    Instrument,
    Item,
    Option,
    Page,
    Scale,
    ValueSet,
)
from qol_app.instruments.wording import WordingOverlay, WordingOverlayError, read_overlay, validate_overlay
from qol_app.paths import QUESTIONNAIRE_DIR

#: The instruments shipped in the package (``qol_app/questionnaires``).
DEFAULT_DIRECTORY = QUESTIONNAIRE_DIR
VALUE_SET_SUBDIR = "value_sets"
#: Documentation files living next to the instruments, never loaded as one.
EXAMPLE_SUFFIX = ".example.yaml"

_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]+)*$")

# --------------------------------------------------------------------- instruments

_ITEM_COMMON = ("optional", "tags")
_ITEM_FIELDS: Mapping[str, tuple[str, ...]] = {
    "choice": ("options", "grading"),
    "number": ("min", "max", "step", "unit"),
    "vas": ("min", "max", "anchors"),
}
_SCALE_COMMON = ("higher_is_better", "not_applicable_if")
_SCALE_FIELDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # type: (required, optional) beyond code/name/type
    "functional": (("items", "range"), ("formula",)),
    "symptom": (("items", "range"), ("formula",)),
    "global": (("items", "range"), ("formula",)),
    "summary": (("components", "inverted_components"), ()),
    "index": (("items", "value_set"), ()),
    "vas": (("items",), ()),
    "item": (("items",), ()),
    "worst": (("items",), ()),
}
_DEFAULT_FORMULA = {"functional": "functional", "symptom": "symptom", "global": "symptom"}


def load_instrument(path: str | Path) -> Instrument:
    """Read and validate one instrument file (``DataFileError`` naming the file name and field
    if malformed)."""
    path = Path(path)
    file = path.name
    instrument = _instrument(read_file(path, file))
    if path.suffix == ".yaml" and instrument.id != path.stem:
        raise DataFileError(file, "id", f"{instrument.id!r} does not match the file name {path.stem!r}")
    return instrument


def parse_instrument(text: str, file: str = "<text>") -> Instrument:
    """Validate instrument YAML text; ``file`` is used in error messages."""
    return _instrument(Node(file, "", read_yaml(text, file)))


def _instrument(root: Node) -> Instrument:
    file = root.file
    top = root.fields(
        ("id", "version", "name", "instructions", "languages", "wording", "pages", "items", "scales"),
        ("option_sets", "paper_number_offset"),
    )
    instrument_id = top["id"].ident()
    paper_offset = top["paper_number_offset"].as_int() if "paper_number_offset" in top else 0
    if paper_offset < 0:
        top["paper_number_offset"].fail("must be >= 0")
    version = top["version"].as_str()
    languages = _languages(top["languages"])
    option_sets = _option_sets(top["option_sets"], languages) if "option_sets" in top else {}
    items = tuple(_item(node, languages, option_sets) for node in top["items"].as_list(min_len=1))
    items_by_id = _unique(top["items"], items, "id", "item id")
    used_sets = {item.option_set for item in items if item.option_set}
    for name in option_sets:
        if name not in used_sets:
            top["option_sets"].with_key(name).fail("option set is not used by any item")
    pages = tuple(_page(node, languages) for node in top["pages"].as_list(min_len=1))
    _unique(top["pages"], pages, "id", "page id")
    _check_pages(top["pages"], pages, items)
    scales = _scales(top["scales"], languages, items_by_id)
    return Instrument(
        id=instrument_id,
        version=version,
        name=top["name"].as_text(languages),
        instructions=top["instructions"].as_text(languages),
        languages=languages,
        wording=cast(Any, top["wording"].choice(WORDINGS)),
        pages=pages,
        items=items,
        scales=scales,
        option_sets=MappingProxyType(option_sets),
        source_file=file,
        paper_number_offset=paper_offset,
    )


def _languages(node: Node) -> tuple[str, ...]:
    languages: list[str] = []
    for entry in node.as_list(min_len=1):
        language = entry.ident(_LOCALE)
        if language in languages:
            entry.fail(f"duplicate language {language!r}")
        languages.append(language)
    return tuple(languages)


def _options(node: Node, languages: tuple[str, ...]) -> tuple[Option, ...]:
    options: list[Option] = []
    seen: set[int] = set()
    for entry in node.as_list(min_len=2):
        fields = entry.fields(("code", "label"))
        code = fields["code"].as_int()
        if code in seen:
            fields["code"].fail(f"duplicate option code {code}")
        seen.add(code)
        options.append(Option(code=code, label=fields["label"].as_text(languages)))
    return tuple(options)


def _option_sets(node: Node, languages: tuple[str, ...]) -> dict[str, tuple[Option, ...]]:
    sets: dict[str, tuple[Option, ...]] = {}
    for key, child in node.entries():
        Node(node.file, child.path, key).ident()
        sets[key] = _options(child, languages)
    return sets


def _item(node: Node, languages: tuple[str, ...], option_sets: Mapping[str, tuple[Option, ...]]) -> Item:
    kind = _discriminator(node, "kind", ITEM_KINDS)
    fields = node.fields(("id", "kind", "text") + _required_item_fields(kind), _ITEM_COMMON + _ITEM_FIELDS[kind])
    item_id = fields["id"].ident()
    common: dict[str, Any] = {
        "id": item_id,
        "kind": kind,
        "text": fields["text"].as_text(languages),
        "optional": fields["optional"].as_bool() if "optional" in fields else False,
        "tags": tuple(t.ident() for t in fields["tags"].as_list()) if "tags" in fields else (),
    }
    if kind == "choice":
        options_node = fields["options"]
        option_set = None
        if isinstance(options_node.value, str):
            option_set = options_node.as_str()
            if option_set not in option_sets:
                options_node.fail(f"unknown option set {option_set!r}")
            options = option_sets[option_set]
        else:
            options = _options(options_node, languages)
        grading = fields["grading"].choice(GRADINGS) if "grading" in fields else None
        return Item(**common, options=options, option_set=option_set, grading=cast(Any, grading))
    low, high = _bounds(fields, integer=kind == "vas")
    if kind == "number":
        step = fields["step"].as_number() if "step" in fields else None
        if step is not None and not 0 < step <= high - low:
            fields["step"].fail(f"step {step} must be positive and at most max - min")
        unit = fields["unit"].as_str() if "unit" in fields else None
        return Item(**common, min=low, max=high, step=step, unit=unit)
    anchors = fields["anchors"].fields(("min", "max"))
    return Item(
        **common,
        min=low,
        max=high,
        step=1.0,
        anchors=(anchors["min"].as_text(languages), anchors["max"].as_text(languages)),
    )


def _discriminator(node: Node, key: str, allowed: tuple[str, ...]) -> str:
    """The field that decides which other fields an entry may have."""
    if key not in node.mapping():
        node.with_key(key).fail("missing required field")
    return node.child(key).choice(allowed)


def _required_item_fields(kind: str) -> tuple[str, ...]:
    return {"choice": ("options",), "number": ("min", "max"), "vas": ("min", "max", "anchors")}[kind]


def _bounds(fields: Mapping[str, Node], *, integer: bool) -> tuple[float, float]:
    read = (lambda n: float(n.as_int())) if integer else (lambda n: n.as_number())
    low, high = read(fields["min"]), read(fields["max"])
    if not low < high:
        fields["max"].fail(f"max {high:g} must be greater than min {low:g}")
    return low, high


def _page(node: Node, languages: tuple[str, ...]) -> Page:
    fields = node.fields(("id", "title", "items"), ("title_untagged",))
    return Page(
        id=fields["id"].ident(),
        title=fields["title"].as_text(languages),
        items=tuple(entry.ident() for entry in fields["items"].as_list(min_len=1)),
        title_untagged=fields["title_untagged"].as_text(languages) if "title_untagged" in fields else None,
    )


def _unique(node: Node, values: tuple[Any, ...], attr: str, what: str) -> dict[str, Any]:
    by_key: dict[str, Any] = {}
    for index, value in enumerate(values):
        key = getattr(value, attr)
        if key in by_key:
            node.at(index).child(attr).fail(f"duplicate {what} {key!r}")
        by_key[key] = value
    return by_key


def _check_pages(node: Node, pages: tuple[Page, ...], items: tuple[Item, ...]) -> None:
    known = {item.id for item in items}
    placed: dict[str, str] = {}
    for page_index, page in enumerate(pages):
        for item_index, item_id in enumerate(page.items):
            where = node.at(page_index).child("items").at(item_index)
            if item_id not in known:
                where.fail(f"unknown item {item_id!r}")
            if item_id in placed:
                where.fail(f"item {item_id!r} is already on page {placed[item_id]!r}")
            placed[item_id] = page.id
    for item in items:
        if item.id not in placed:
            node.fail(f"item {item.id!r} is on no page")


def _scales(node: Node, languages: tuple[str, ...], items: Mapping[str, Item]) -> tuple[Scale, ...]:
    scales: dict[str, Scale] = {}
    for entry in node.as_list(min_len=1):
        scale = _scale(entry, languages, items, scales)
        if scale.code in scales:
            entry.child("code").fail(f"duplicate scale code {scale.code!r}")
        scales[scale.code] = scale
    return tuple(scales.values())


def _scale(
    node: Node,
    languages: tuple[str, ...],
    items: Mapping[str, Item],
    earlier: Mapping[str, Scale],
) -> Scale:
    scale_type = _discriminator(node, "type", SCALE_TYPES)
    required, optional = _SCALE_FIELDS[scale_type]
    fields = node.fields(("code", "name", "type") + required, optional + _SCALE_COMMON)
    scale: dict[str, Any] = {
        "code": fields["code"].ident(_CODE),
        "name": fields["name"].as_text(languages),
        "type": scale_type,
        "higher_is_better": (
            fields["higher_is_better"].as_bool()
            if "higher_is_better" in fields
            else HIGHER_IS_BETTER_BY_TYPE[scale_type]
        ),
    }
    if scale_type == "summary":
        direct = _components(fields["components"], earlier)
        inverted = _components(fields["inverted_components"], earlier)
        if set(direct) & set(inverted):
            fields["inverted_components"].fail("a component cannot be both direct and inverted")
        underlying: dict[str, None] = {}
        for code in direct + inverted:
            underlying.update(dict.fromkeys(earlier[code].items))
        scale.update(items=tuple(underlying), components=direct, inverted_components=inverted)
    else:
        scale["items"] = _scale_items(fields["items"], items, scale_type)
    if scale_type in EORTC_TYPES:
        scale["formula"] = fields["formula"].choice(FORMULAS) if "formula" in fields else _DEFAULT_FORMULA[scale_type]
        scale["range"] = _eortc_range(fields["range"], scale["items"], items)
    if scale_type == "index":
        scale["value_set"] = fields["value_set"].ident(_CODE)
    if "not_applicable_if" in fields:
        scale["not_applicable_if"] = tuple(
            _condition(entry, items) for entry in fields["not_applicable_if"].as_list(min_len=1)
        )
    return Scale(**scale)


def _scale_items(node: Node, items: Mapping[str, Item], scale_type: str) -> tuple[str, ...]:
    ids: list[str] = []
    for entry in node.as_list(min_len=1):
        item_id = entry.ident()
        if item_id not in items:
            entry.fail(f"unknown item {item_id!r}")
        if item_id in ids:
            entry.fail(f"item {item_id!r} listed twice")
        kind = items[item_id].kind
        if scale_type in EORTC_TYPES | {"index", "worst"} and kind != "choice":
            entry.fail(f"{scale_type} scales need choice items, {item_id!r} is {kind}")
        if scale_type == "vas" and kind != "vas":
            entry.fail(f"vas scales need a vas item, {item_id!r} is {kind}")
        ids.append(item_id)
    if scale_type in ("vas", "item") and len(ids) != 1:
        node.fail(f"{scale_type} scales take exactly one item")
    return tuple(ids)


def _eortc_range(node: Node, scale_items: tuple[str, ...], items: Mapping[str, Item]) -> float:
    value = node.as_number()
    for item_id in scale_items:
        codes = items[item_id].codes
        span = max(codes) - min(codes)
        if span != value:
            node.fail(f"{value:g} does not match the codes of {item_id!r} ({min(codes)}..{max(codes)}, range {span})")
        if sorted(codes) != list(range(1, max(codes) + 1)):
            node.fail(f"codes of {item_id!r} must be 1, 2, ... without gaps (EORTC coding)")
    return value


def _components(node: Node, earlier: Mapping[str, Scale]) -> tuple[str, ...]:
    codes: list[str] = []
    for entry in node.as_list():
        code = entry.ident(_CODE)
        scale = earlier.get(code)
        if scale is None:
            entry.fail(f"unknown scale {code!r} (components must be defined earlier)")
        if scale.type not in EORTC_TYPES:
            entry.fail(f"component {code!r} is not a 0-100 EORTC scale")
        if code in codes:
            entry.fail(f"component {code!r} listed twice")
        codes.append(code)
    return tuple(codes)


def _condition(node: Node, items: Mapping[str, Item]) -> Condition:
    fields = node.fields(("item", "in"))
    item_id = fields["item"].ident()
    if item_id not in items:
        fields["item"].fail(f"unknown item {item_id!r}")
    values: set[int] = set()
    for entry in fields["in"].as_list(min_len=1):
        code = entry.as_int()
        if code not in items[item_id].codes:
            entry.fail(f"{code} is not a code of {item_id!r}")
        values.add(code)
    return Condition(item=item_id, values=frozenset(values))


# --------------------------------------------------------------------- value sets


def load_value_set(path: str | Path) -> ValueSet:
    """Read one value-set file and verify its published check values."""
    path = Path(path)
    file = path.name
    top = read_file(path, file).fields(
        ("name", "instrument", "title", "source", "dimensions", "decrements"),
        ("constant", "checks"),
    )
    dimensions = tuple(entry.ident() for entry in top["dimensions"].as_list(min_len=1))
    if len(set(dimensions)) != len(dimensions):
        top["dimensions"].fail("duplicate dimension")
    decrements_node = top["decrements"]
    decrements: dict[str, Mapping[int, float]] = {}
    for dim, child in decrements_node.entries():
        if dim not in dimensions:
            decrements_node.with_key(dim).fail("not one of dimensions")
        levels: dict[int, float] = {}
        for level, weight in child.entries():
            Node(file, weight.path, level).as_int()
            levels[level] = weight.as_number()
        decrements[dim] = MappingProxyType(levels)
    for dim in dimensions:
        if dim not in decrements:
            decrements_node.with_key(dim).fail("missing decrements for dimension")
    value_set = ValueSet(
        name=top["name"].ident(_CODE),
        instrument=top["instrument"].ident(),
        title=top["title"].as_str(),
        source=top["source"].as_str(),
        dimensions=dimensions,
        decrements=MappingProxyType(decrements),
        constant=top["constant"].as_number() if "constant" in top else 0.0,
    )
    checks: dict[str, float] = {}
    for profile, child in top["checks"].entries() if "checks" in top else ():
        expected = child.as_number()
        profile_node = Node(file, child.path, profile)
        levels_ = _profile(profile_node, value_set)
        got = value_set.index(levels_)
        if round(got, 3) != round(expected, 3):
            child.fail(f"value set gives {got:.3f}, expected {expected:.3f}")
        checks[str(profile)] = expected
    return replace(value_set, checks=MappingProxyType(checks))


def _profile(node: Node, value_set: ValueSet) -> dict[str, int]:
    profile = str(node.value)
    if len(profile) != len(value_set.dimensions) or not profile.isdigit():
        node.fail(f"profile {profile!r} must have one digit per dimension")
    levels = {dim: int(ch) for dim, ch in zip(value_set.dimensions, profile)}
    for dim, level in levels.items():
        if level not in value_set.decrements[dim]:
            node.fail(f"level {level} has no decrement for {dim!r}")
    return levels


# --------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Registry:
    """All instruments (by id) and value sets (by name) of one directory."""

    instruments: Mapping[str, Instrument]
    value_sets: Mapping[str, ValueSet]
    directory: str = ""

    def get(self, instrument_id: str) -> Instrument:
        """The instrument with this id; ``ValueError`` naming an unknown id."""
        try:
            return self.instruments[instrument_id]
        except KeyError:
            raise ValueError(
                f"unknown instrument {instrument_id!r} (known: {', '.join(sorted(self.instruments))})"
            ) from None

    def value_set(self, name: str) -> ValueSet:
        """The value set with this name; ``ValueError`` naming an unknown one."""
        try:
            return self.value_sets[name]
        except KeyError:
            raise ValueError(f"unknown value set {name!r} (known: {', '.join(sorted(self.value_sets))})") from None

    def __contains__(self, instrument_id: object) -> bool:
        return instrument_id in self.instruments

    def __iter__(self) -> Iterator[str]:
        return iter(self.instruments)

    def __len__(self) -> int:
        return len(self.instruments)


def instrument_files(directory: str | Path) -> list[Path]:
    """Instrument files of a directory (``*.yaml``, not examples, not sub-folders)."""
    return sorted(path for path in Path(directory).glob("*.yaml") if not path.name.endswith(EXAMPLE_SUFFIX))


def load_registry(directory: str | Path, *overrides: str | Path) -> Registry:
    """Load every instrument of ``directory`` and its ``value_sets/`` sub-folder.

    Each of ``overrides`` (a site's own folder, laid out the same way) is read after it: an
    instrument or value set with an id already loaded replaces it, a new one is added. Within one
    folder an id may appear only once.
    """
    folders = [Path(directory), *(Path(o) for o in overrides if Path(o).resolve() != Path(directory).resolve())]
    instruments: dict[str, Instrument] = {}
    value_sets: dict[str, ValueSet] = {}
    set_files: dict[str, str] = {}
    for folder in folders:
        if not folder.is_dir():
            raise DataFileError(str(folder), "", "questionnaire folder does not exist")
        here: dict[str, Instrument] = {}
        for path in instrument_files(folder):
            instrument = load_instrument(path)
            if instrument.id in here:
                raise DataFileError(path.name, "id", f"duplicate instrument id {instrument.id!r}")
            here[instrument.id] = instrument
        instruments.update(here)
        sets_here: dict[str, ValueSet] = {}
        for path in sorted((folder / VALUE_SET_SUBDIR).glob("*.yaml")):
            value_set = load_value_set(path)
            if value_set.name in sets_here:
                raise DataFileError(path.name, "name", f"duplicate value set {value_set.name!r}")
            sets_here[value_set.name] = value_set
            set_files[value_set.name] = path.name
        value_sets.update(sets_here)
    for name, value_set in value_sets.items():
        _check_value_set(set_files[name], value_set, instruments)
    for instrument in instruments.values():
        for index, scale in enumerate(instrument.scales):
            if scale.value_set is not None:
                vs = value_sets.get(scale.value_set)
                if vs is None or vs.instrument != instrument.id:
                    raise DataFileError(
                        instrument.source_file,
                        f"scales[{index}].value_set",
                        f"no value set {scale.value_set!r} for {instrument.id!r}",
                    )
                if vs.dimensions != scale.items:
                    raise DataFileError(
                        instrument.source_file,
                        f"scales[{index}].items",
                        f"do not match the dimensions of value set {vs.name!r}",
                    )
    return Registry(MappingProxyType(instruments), MappingProxyType(value_sets), ":".join(str(f) for f in folders))


def _check_value_set(file: str, value_set: ValueSet, instruments: Mapping[str, Instrument]) -> None:
    instrument = instruments.get(value_set.instrument)
    if instrument is None:
        raise DataFileError(file, "instrument", f"unknown instrument {value_set.instrument!r}")
    for dim in value_set.dimensions:
        if not instrument.has_item(dim):
            raise DataFileError(file, "dimensions", f"{dim!r} is not an item of {instrument.id!r}")
        codes = set(instrument.item(dim).codes)
        if set(value_set.decrements[dim]) != codes:
            raise DataFileError(file, f"decrements.{dim}", f"levels must be exactly the item codes {sorted(codes)}")


@functools.lru_cache(maxsize=8)
def _cached_registry(site_directory: str | None) -> Registry:
    if site_directory is None:
        return load_registry(DEFAULT_DIRECTORY)
    return load_registry(DEFAULT_DIRECTORY, site_directory)


def get_registry(site_directory: str | Path | None = None) -> Registry:
    """The shipped instruments, with a site's folder (``QUESTIONNAIRE_DIR``) laid over them, loaded once.

    A site's file adds an instrument or, with an id the package ships, replaces it. Files are
    read on the first call per folder only; restart the process (or call
    ``clear_registry_cache()``) to pick up edited files.
    """
    if site_directory is None:
        return _default_registry()
    return _cached_registry(str(Path(site_directory).resolve()))


@functools.lru_cache(maxsize=1)
def _default_registry() -> Registry:
    return _cached_registry(None)


def clear_registry_cache() -> None:
    """Forget loaded registries (tests, or after editing questionnaire files)."""
    _default_registry.cache_clear()
    _cached_registry.cache_clear()


# --------------------------------------------------------------------- wording overlays


def parse_overlay(
    source: str | Path,
    *,
    instrument: Instrument | None = None,
    registry: Registry | None = None,
    name: str | None = None,
) -> WordingOverlay:
    """Read an overlay and validate it against its instrument.

    The instrument is ``instrument`` if given, else the one the overlay names
    in ``registry`` (default: the shipped questionnaires). Raises
    ``WordingOverlayError`` naming the file and field.
    """
    overlay = read_overlay(source, name=name)
    if instrument is None:
        try:
            instrument = (registry or get_registry()).get(overlay.instrument)
        except ValueError as exc:
            raise WordingOverlayError(overlay.file, "instrument", str(exc)) from None
    validate_overlay(overlay, instrument)
    return overlay
