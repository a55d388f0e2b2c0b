"""Licensed-wording overlays and the localized view used to render a form.

A site licensed to use the official wording of an instrument (EORTC, EuroQol)
loads it per language as an *overlay*: a YAML or JSON file giving the text of
every item, every option label, the title and the instructions. The overlay
replaces the shipped descriptive labels wholesale; it is validated against the
instrument so a form is never rendered half official, half paraphrased.

API for importers (e.g. a CLI that stores overlays in the database), from ``qol_app.instruments``
(``parse_overlay`` lives in ``loader.py``: it finds the overlay's instrument in the registry)::

    overlay = parse_overlay(Path("c30-zh.yaml"))   # read + validate, or raise
    overlay.instrument, overlay.language, overlay.wording_version, overlay.source
    text = overlay_text(overlay)                   # canonical YAML to store
    parse_overlay(text)                            # round-trips when reloaded

File format (see ``qol_app/questionnaires/wording-overlay.example.yaml``)::

    instrument: eortc_qlq_c30        # instrument id
    instrument_version: "3.0"        # must equal the registered version
    language: zh_Hans                # locale it is for
    wording_version: "licensed-zh_Hans-2024"   # recorded with every response
    source: "EORTC licence #..."
    title: ...
    instructions: ...
    items: {q1: ..., q2: ...}        # every item
    options:                         # every option of every choice item, either
      eortc4: {1: ..., 2: ...}       #   per option set (as named in the instrument)
      q29: {1: ..., 7: ...}          #   or per item (takes precedence)
    anchors: {vas: {min: ..., max: ...}}   # every vas item
    pages: {p1: ...}                 # optional while the instrument ships this
                                     # language (shipped page titles are kept)
    audio:                           # optional: the site's recordings of these texts
      instructions: audio/intro.wav  #   paths relative to the overlay file's folder
      items: {q1: audio/q1.wav, ...} #   every item
      options: {eortc4: {1: ...}}    #   optional; per option set or item, every code

On import, ``load_recordings`` reads and checks each recording and replaces its path by
``sha256:<hex>`` (the stored overlay names recordings by content, never by a file path).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from qol_app.datafile import DataFileError, Node, read_yaml
from qol_app.instruments.schema import (
    Instrument,
    Item,
    MissingLanguageError,
)


class WordingOverlayError(DataFileError):
    """An overlay file is malformed or does not match its instrument."""


_REQUIRED = (
    "instrument",
    "instrument_version",
    "language",
    "wording_version",
    "source",
    "title",
    "instructions",
    "items",
)
_OPTIONAL = ("options", "anchors", "pages", "audio")

#: A stored recording reference: the SHA-256 of the recording's bytes.
DIGEST_REF = re.compile(r"^sha256:([0-9a-f]{64})$")
MAX_RECORDING_BYTES = 8 * 1024 * 1024  # a spoken item is seconds long; this is generous


@dataclass(frozen=True)
class OverlayAudio:
    """An overlay's recordings: one reference per text. On import a reference is a file path
    relative to the overlay file's folder; once stored it is ``sha256:<hex>``."""

    instructions: str
    items: Mapping[str, str]
    options: Mapping[str, Mapping[int, str]] = field(default_factory=lambda: MappingProxyType({}))

    def option_refs(self, item: Item) -> Mapping[int, str] | None:
        """Recordings of ``item``'s options: its own entry, else its option set's, else None."""
        return _of_item(self.options, item)

    def refs(self) -> Iterator[tuple[str, str]]:
        """(field path, reference) of every recording, in file order."""
        yield "audio.instructions", self.instructions
        for item_id, ref in self.items.items():
            yield f"audio.items.{item_id}", ref
        for key, refs in self.options.items():
            for code, ref in refs.items():
                yield f"audio.options.{key}.{code}", ref


@dataclass(frozen=True)
class Recording:
    """One recording's bytes, as checked on import."""

    sha256: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class WordingOverlay:
    """Licensed wording of one instrument version in one language."""

    instrument: str
    instrument_version: str
    language: str
    wording_version: str
    source: str
    title: str
    instructions: str
    items: Mapping[str, str]
    options: Mapping[str, Mapping[int, str]] = field(default_factory=lambda: MappingProxyType({}))
    anchors: Mapping[str, tuple[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    pages: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    audio: OverlayAudio | None = None
    file: str = "<text>"

    def option_labels(self, item: Item) -> Mapping[int, str] | None:
        """Labels for ``item``: its own entry, else its option set's, else None."""
        return _of_item(self.options, item)


def _of_item(options: Mapping[str, Mapping[int, str]], item: Item) -> Mapping[int, str] | None:
    """The entry of ``options`` (labels or recordings, keyed by item or option set) for ``item``."""
    if item.id in options:
        return options[item.id]
    if item.option_set is not None:
        return options.get(item.option_set)
    return None


def read_overlay(source: str | Path, *, name: str | None = None) -> WordingOverlay:
    """Parse an overlay's structure only (not checked against the instrument).

    ``source`` is a ``Path`` to a YAML/JSON file, or the file's text as ``str``
    (``name`` then labels error messages).
    """
    if isinstance(source, Path):
        file = name or source.name
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise WordingOverlayError(file, "", f"cannot read file: {exc.strerror or exc}") from None
    else:
        if "\n" not in source and source.strip().endswith((".yaml", ".yml", ".json")):
            raise WordingOverlayError(
                source,
                "",
                "looks like a file name: pass a pathlib.Path to read a file (a str is parsed as the overlay's text)",
            )
        file, text = name or "<text>", source
    try:
        return _read(Node(file, "", read_yaml(text, file)))
    except WordingOverlayError:
        raise
    except DataFileError as exc:
        raise WordingOverlayError(exc.file, exc.field, exc.problem) from None


def _read(root: Node) -> WordingOverlay:
    top = root.fields(_REQUIRED, _OPTIONAL)
    options: dict[str, Mapping[int, str]] = {}
    for key, child in top["options"].entries() if "options" in top else ():
        labels: dict[int, str] = {}
        for code, label in child.entries():
            labels[_code(Node(root.file, label.path, code))] = label.as_str()
        options[str(key)] = MappingProxyType(labels)
    anchors: dict[str, tuple[str, str]] = {}
    for key, child in top["anchors"].entries() if "anchors" in top else ():
        ends = child.fields(("min", "max"))
        anchors[str(key)] = (ends["min"].as_str(), ends["max"].as_str())
    return WordingOverlay(
        instrument=top["instrument"].ident(),
        instrument_version=top["instrument_version"].as_str(),
        language=top["language"].as_str(),
        wording_version=top["wording_version"].as_str(),
        source=top["source"].as_str(),
        title=top["title"].as_str(),
        instructions=top["instructions"].as_str(),
        items=_strings(top["items"]),
        options=MappingProxyType(options),
        anchors=MappingProxyType(anchors),
        pages=_strings(top["pages"]) if "pages" in top else MappingProxyType({}),
        audio=_audio(top["audio"]) if "audio" in top else None,
        file=root.file,
    )


def _audio(node: Node) -> OverlayAudio:
    top = node.fields(("instructions", "items"), ("options",))
    options: dict[str, Mapping[int, str]] = {}
    for key, child in top["options"].entries() if "options" in top else ():
        refs: dict[int, str] = {}
        for code, ref in child.entries():
            refs[_code(Node(node.file, ref.path, code))] = ref.as_str()
        options[str(key)] = MappingProxyType(refs)
    return OverlayAudio(top["instructions"].as_str(), _strings(top["items"]), MappingProxyType(options))


def _code(node: Node) -> int:
    """Option code as an int; JSON keys arrive as digit strings."""
    if isinstance(node.value, str) and node.value.lstrip("-").isdigit():
        return int(node.value)
    return node.as_int()


def _strings(node: Node) -> Mapping[str, str]:
    return MappingProxyType({str(key): child.as_str() for key, child in node.entries()})


def validate_overlay(overlay: WordingOverlay, instrument: Instrument) -> None:
    """Check the overlay covers exactly this instrument; raise ``WordingOverlayError``.

    Every item needs a text, every option of every choice item a label (per
    item or per option set), every vas item both anchors; unknown item ids,
    option sets, codes and pages are errors.
    """

    def fail(path: str, problem: str) -> NoReturn:
        raise WordingOverlayError(overlay.file, path, problem)

    if overlay.instrument != instrument.id:
        fail("instrument", f"overlay is for {overlay.instrument!r}, not {instrument.id!r}")
    if overlay.instrument_version != instrument.version:
        fail(
            "instrument_version",
            f"{overlay.instrument_version!r} does not match {instrument.id} version {instrument.version!r}",
        )
    for item_id in overlay.items:
        if not instrument.has_item(item_id):
            fail(f"items.{item_id}", f"unknown item id {item_id!r}")
    for item in instrument.items:
        if item.id not in overlay.items:
            fail(f"items.{item.id}", f"missing text for item {item.id!r}")
    _check_option_codes(overlay.options, instrument, fail, "options", "missing label")
    for item in instrument.items:
        if item.kind == "choice" and overlay.option_labels(item) is None:
            fail(f"options.{item.id}", f"missing labels for item {item.id!r}")
    for item_id in overlay.anchors:
        if not instrument.has_item(item_id) or instrument.item(item_id).kind != "vas":
            fail(f"anchors.{item_id}", f"{item_id!r} is not a vas item")
    for item in instrument.items:
        if item.kind == "vas" and item.id not in overlay.anchors:
            fail(f"anchors.{item.id}", f"missing anchors for item {item.id!r}")
    page_ids = {page.id for page in instrument.pages}
    for page_id in overlay.pages:
        if page_id not in page_ids:
            fail(f"pages.{page_id}", f"unknown page {page_id!r}")
    if overlay.language not in instrument.languages:
        for page in instrument.pages:
            if page.id not in overlay.pages:
                fail(f"pages.{page.id}", f"missing title: {instrument.id} ships no {overlay.language!r} page titles")
    if overlay.audio is not None:
        _validate_audio(overlay.audio, instrument, fail)


def _check_option_codes(
    entries: Mapping[str, Mapping[int, Any]], instrument: Instrument, fail: Any, field: str, missing: str
) -> None:
    """Each key of ``entries`` is an option set or a choice item of ``instrument``, and its entries
    cover exactly that key's codes (an overlay's labels, or its recordings)."""
    sets = set(instrument.option_sets)
    for key, given in entries.items():
        if key in sets:
            codes = {option.code for option in instrument.option_sets[key]}
        elif instrument.has_item(key) and instrument.item(key).kind == "choice":
            codes = set(instrument.item(key).codes)
        else:
            fail(f"{field}.{key}", f"{key!r} is neither a choice item nor an option set")
        for code in given:
            if code not in codes:
                fail(f"{field}.{key}.{code}", f"{code} is not a code of {key!r}")
        for code in sorted(codes - set(given)):
            fail(f"{field}.{key}.{code}", missing)


def _validate_audio(audio: OverlayAudio, instrument: Instrument, fail: Any) -> None:
    """Recordings, when given, cover the instructions and every item (a form is never read out
    half); option recordings are optional, but an option set or item listed covers all its codes."""
    for item_id in audio.items:
        if not instrument.has_item(item_id):
            fail(f"audio.items.{item_id}", f"unknown item id {item_id!r}")
    for item in instrument.items:
        if item.id not in audio.items:
            fail(f"audio.items.{item.id}", f"missing recording for item {item.id!r}")
    _check_option_codes(audio.options, instrument, fail, "audio.options", "missing recording")


#: Leading bytes of the audio formats browsers play, and the content type each is served as.
_AUDIO_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "audio/wav"),  # RIFF ... WAVE: checked below
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (4, b"ftyp", "audio/mp4"),
    (0, b"\x1a\x45\xdf\xa3", "audio/webm"),
)


def sniff_audio(data: bytes) -> str | None:
    """The content type of a recording from its first bytes (never from its file name), or None."""
    for offset, magic, content_type in _AUDIO_FORMATS:
        if data[offset : offset + len(magic)] == magic:
            if content_type == "audio/wav" and data[8:12] != b"WAVE":
                return None
            return content_type
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MPEG audio frame without ID3 tag
        return "audio/mpeg"
    return None


def load_recordings(overlay: WordingOverlay, directory: Path) -> tuple[WordingOverlay, dict[str, Recording]]:
    """Read every recording an overlay file names, relative to ``directory`` (the overlay file's
    folder); return the overlay naming them by digest, and the recordings by digest.

    Raises ``WordingOverlayError`` naming the file and field for a path outside ``directory``,
    a file that is missing, unreadable, empty, too large or not a known audio format.
    """
    if overlay.audio is None:
        return overlay, {}
    base = directory.resolve()
    found: dict[str, Recording] = {}
    digests: dict[str, str] = {}

    def load(path: str, ref: str) -> str:
        if ref in digests:
            return digests[ref]

        def fail(problem: str) -> NoReturn:
            raise WordingOverlayError(overlay.file, path, f"{ref}: {problem}")

        relative = Path(ref)
        if relative.is_absolute() or ".." in relative.parts:
            fail("give a path relative to the overlay file's folder, inside it")
        target = (base / relative).resolve()
        if not target.is_relative_to(base):
            fail("the recording is outside the overlay file's folder")
        try:
            with target.open("rb") as handle:
                data = handle.read(MAX_RECORDING_BYTES + 1)
        except OSError as exc:
            fail(f"cannot read: {exc.strerror or exc}")
        if not data:
            fail("the file is empty")
        if len(data) > MAX_RECORDING_BYTES:
            fail(f"larger than {MAX_RECORDING_BYTES // (1024 * 1024)} MB")
        content_type = sniff_audio(data)
        if content_type is None:
            fail("not a recording in a format browsers play (WAV, MP3, Ogg, FLAC, MP4/M4A, WebM)")
        digest = hashlib.sha256(data).hexdigest()
        found[digest] = Recording(digest, content_type, data)
        digests[ref] = f"sha256:{digest}"
        return digests[ref]

    audio = overlay.audio
    stored = OverlayAudio(
        instructions=load("audio.instructions", audio.instructions),
        items=MappingProxyType({i: load(f"audio.items.{i}", ref) for i, ref in audio.items.items()}),
        options=MappingProxyType(
            {
                key: MappingProxyType({code: load(f"audio.options.{key}.{code}", ref) for code, ref in refs.items()})
                for key, refs in audio.options.items()
            }
        ),
    )
    return replace(overlay, audio=stored), found


def recording_digest(ref: str | None) -> str | None:
    """The hex digest of a stored reference (``sha256:<hex>``); None for a file path or nothing."""
    match = DIGEST_REF.match(ref or "")
    return match.group(1) if match else None


def overlay_text(overlay: WordingOverlay) -> str:
    """Canonical YAML of an overlay (for storage); ``parse_overlay`` reads it back."""
    data: dict[str, Any] = {
        "instrument": overlay.instrument,
        "instrument_version": overlay.instrument_version,
        "language": overlay.language,
        "wording_version": overlay.wording_version,
        "source": overlay.source,
        "title": overlay.title,
        "instructions": overlay.instructions,
        "items": dict(overlay.items),
        "options": {key: dict(labels) for key, labels in overlay.options.items()},
        "anchors": {key: {"min": lo, "max": hi} for key, (lo, hi) in overlay.anchors.items()},
        "pages": dict(overlay.pages),
        "audio": {}
        if overlay.audio is None
        else {
            "instructions": overlay.audio.instructions,
            "items": dict(overlay.audio.items),
            **({"options": {k: dict(v) for k, v in overlay.audio.options.items()}} if overlay.audio.options else {}),
        },
    }
    return yaml.safe_dump(
        {key: value for key, value in data.items() if value != {}}, allow_unicode=True, sort_keys=False
    )


# --------------------------------------------------------------------- localized view


@dataclass(frozen=True)
class LocalizedOption:
    code: int
    label: str
    audio: str | None = None  # the recording's sha256 (a site's licensed audio), if any


@dataclass(frozen=True)
class LocalizedItem:
    """An item with its text in one locale; structure stays on ``item``."""

    item: Item
    text: str
    options: tuple[LocalizedOption, ...] = ()
    anchors: tuple[str, str] | None = None
    audio: str | None = None  # the recording's sha256 (a site's licensed audio), if any

    @property
    def id(self) -> str:
        return self.item.id

    @property
    def kind(self) -> str:
        return self.item.kind


@dataclass(frozen=True)
class LocalizedPage:
    id: str
    title: str
    items: tuple[LocalizedItem, ...]
    title_untagged: str | None = None  # the title when its tagged items are not shown

    def title_for(self, shown: tuple[str, ...]) -> str:
        """The title that fits the items shown (the untagged one when some are left out)."""
        if self.title_untagged and len(shown) < len(self.items):
            return self.title_untagged
        return self.title


@dataclass(frozen=True)
class LocalizedInstrument:
    """Everything needed to render an instrument in one locale.

    ``wording_version`` is stored with each response so the exact texts shown
    are known: ``own-descriptive:<version>`` / ``original:<version>`` for the
    shipped texts, the overlay's own label otherwise.
    """

    instrument_id: str
    instrument_version: str
    locale: str
    title: str
    instructions: str
    wording_version: str
    licensed: bool
    source: str | None
    pages: tuple[LocalizedPage, ...]
    instructions_audio: str | None = None  # the recording's sha256, if any

    @property
    def items(self) -> tuple[LocalizedItem, ...]:
        """All items in page order."""
        return tuple(item for page in self.pages for item in page.items)

    def item(self, item_id: str) -> LocalizedItem:
        for item in self.items:
            if item.id == item_id:
                return item
        raise ValueError(f"{self.instrument_id}: unknown item id {item_id!r}")

    def page(self, page_id: str) -> LocalizedPage:
        for page in self.pages:
            if page.id == page_id:
                return page
        raise ValueError(f"{self.instrument_id}: unknown page {page_id!r}")

    def option_label(self, item_id: str, code: int) -> str:
        for option in self.item(item_id).options:
            if option.code == code:
                return option.label
        raise ValueError(f"{self.instrument_id}: {code!r} is not a code of {item_id!r}")


#: Built views, keyed by the identity of the (immutable) instrument and overlay objects,
#: which are kept alongside so an id can never be reused while its entry lives.
_VIEWS: dict[tuple[int, int | None, str], tuple[Instrument, WordingOverlay | None, LocalizedInstrument]] = {}
_VIEWS_MAX = 128


def localize(instrument: Instrument, locale: str, overlay: WordingOverlay | None = None) -> LocalizedInstrument:
    """The localized view (``Instrument.localized`` delegates here).

    Built once per instrument, overlay and locale (all frozen), then reused: a page view
    needs it on every request. Errors are not cached, so they are raised every time.
    """
    key = (id(instrument), None if overlay is None else id(overlay), locale)
    hit = _VIEWS.get(key)
    if hit is not None and hit[0] is instrument and hit[1] is overlay:
        return hit[2]
    view = _build(instrument, locale, overlay)
    if len(_VIEWS) >= _VIEWS_MAX:
        _VIEWS.clear()
    _VIEWS[key] = (instrument, overlay, view)
    return view


def _build(instrument: Instrument, locale: str, overlay: WordingOverlay | None) -> LocalizedInstrument:
    if overlay is None:
        if locale not in instrument.languages:
            raise MissingLanguageError(
                f"{instrument.id} has no texts in {locale!r} (available: {', '.join(instrument.languages)})"
            )
        return _shipped(instrument, locale)
    if overlay.language != locale:
        raise MissingLanguageError(f"overlay {overlay.wording_version!r} is for {overlay.language!r}, not {locale!r}")
    validate_overlay(overlay, instrument)
    return _overlaid(instrument, locale, overlay)


def _shipped(instrument: Instrument, locale: str) -> LocalizedInstrument:
    def item_view(item: Item) -> LocalizedItem:
        return LocalizedItem(
            item=item,
            text=item.text[locale],
            options=tuple(LocalizedOption(o.code, o.label[locale]) for o in item.options),
            anchors=(item.anchors[0][locale], item.anchors[1][locale]) if item.anchors else None,
        )

    return LocalizedInstrument(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        locale=locale,
        title=instrument.name[locale],
        instructions=instrument.instructions[locale],
        wording_version=instrument.wording_version,
        licensed=False,
        source=None,
        pages=tuple(
            LocalizedPage(
                page.id,
                page.title[locale],
                tuple(item_view(instrument.item(i)) for i in page.items),
                page.title_untagged[locale] if page.title_untagged else None,
            )
            for page in instrument.pages
        ),
    )


def _overlaid(instrument: Instrument, locale: str, overlay: WordingOverlay) -> LocalizedInstrument:
    audio = overlay.audio

    def item_view(item: Item) -> LocalizedItem:
        labels = overlay.option_labels(item) or {}
        clips = (audio.option_refs(item) if audio is not None else None) or {}
        return LocalizedItem(
            item=item,
            text=overlay.items[item.id],
            options=tuple(
                LocalizedOption(o.code, labels[o.code], recording_digest(clips.get(o.code))) for o in item.options
            ),
            anchors=overlay.anchors.get(item.id),
            audio=recording_digest(audio.items.get(item.id)) if audio is not None else None,
        )

    def page_title(page_id: str) -> str:
        # Page titles are the app's grouping, not instrument wording: the
        # shipped title in the same language is kept unless the overlay has one.
        return overlay.pages.get(page_id) or instrument.page(page_id).title[locale]

    return LocalizedInstrument(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        locale=locale,
        title=overlay.title,
        instructions=overlay.instructions,
        wording_version=overlay.wording_version,
        licensed=True,
        source=overlay.source,
        pages=tuple(
            LocalizedPage(
                page.id,
                page_title(page.id),
                tuple(item_view(instrument.item(i)) for i in page.items),
                page.title_untagged[locale] if page.title_untagged and page.id not in overlay.pages else None,
            )
            for page in instrument.pages
        ),
        instructions_audio=recording_digest(audio.instructions) if audio is not None else None,
    )
