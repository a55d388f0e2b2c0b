"""Licensed-wording overlays: parse, validate against the instrument, render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from qol_app.instruments import (
    DEFAULT_DIRECTORY,
    MissingLanguageError,
    WordingOverlayError,
    get_registry,
    localize,
    overlay_text,
    parse_overlay,
    read_overlay,
)

EXAMPLE = DEFAULT_DIRECTORY / "wording-overlay.example.yaml"


def example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def eq5d_overlay(language: str = "zh_Hans") -> dict[str, Any]:
    eq = get_registry().get("eq5d5l")
    return {
        "instrument": "eq5d5l",
        "instrument_version": eq.version,
        "language": language,
        "wording_version": "test-1",
        "source": "licence #TEST",
        "title": "[T]",
        "instructions": "[I]",
        "items": {item.id: f"[{item.id}]" for item in eq.items},
        "options": {name: {o.code: f"[{name} {o.code}]" for o in options} for name, options in eq.option_sets.items()},
        "anchors": {"vas": {"min": "[worst]", "max": "[best]"}},
    }


def test_example_overlay_is_valid_and_placeholder() -> None:
    overlay = parse_overlay(EXAMPLE)
    assert (overlay.instrument, overlay.instrument_version, overlay.language) == ("eortc_qlq_c30", "3.0", "zh_Hans")
    assert overlay.file == "wording-overlay.example.yaml"
    assert all(text.startswith("[") for text in overlay.items.values())


def test_overlay_renders_instead_of_shipped_wording() -> None:
    c30 = get_registry().get("eortc_qlq_c30")
    overlay = parse_overlay(EXAMPLE)
    form = localize(c30, "zh_Hans", overlay)
    assert form.licensed and form.source == overlay.source
    assert form.wording_version == "example-zh_Hans-0"
    assert form.title == "[Official title goes here]"
    assert form.item("q1").text == "[Official text of item 1 goes here]"
    assert form.option_label("q1", 4) == "[Option 4 label]"
    assert form.option_label("q30", 7) == "[Rating 7 label]"
    # Page titles: overlay's where given, else the shipped one of the same language.
    assert form.page("p7").title.startswith("[Page title")
    assert form.page("p1").title == "体力活动"


def test_overlay_for_other_locale_is_refused() -> None:
    c30 = get_registry().get("eortc_qlq_c30")
    with pytest.raises(MissingLanguageError, match="'zh_Hans', not 'en'"):
        localize(c30, "en", parse_overlay(EXAMPLE))


def test_unknown_item_id_is_named() -> None:
    data = example_data()
    data["items"]["q31"] = "[extra]"
    with pytest.raises(WordingOverlayError, match=r"^<text>: items\.q31: unknown item id 'q31'"):
        parse_overlay(dump(data))


def test_missing_item_is_named() -> None:
    data = example_data()
    del data["items"]["q17"]
    with pytest.raises(WordingOverlayError, match=r"items\.q17: missing text for item 'q17'"):
        parse_overlay(dump(data), name="c30-zh.yaml")


def test_unknown_and_missing_option_codes() -> None:
    data = example_data()
    data["options"]["eortc4"][5] = "[five]"
    with pytest.raises(WordingOverlayError, match=r"options\.eortc4\.5: 5 is not a code"):
        parse_overlay(dump(data))
    data = example_data()
    del data["options"]["rating7"][3]
    with pytest.raises(WordingOverlayError, match=r"options\.rating7\.3: missing label"):
        parse_overlay(dump(data))
    data = example_data()
    data["options"]["q99"] = {1: "x"}
    with pytest.raises(WordingOverlayError, match=r"options\.q99: 'q99' is neither"):
        parse_overlay(dump(data))


def test_item_may_override_its_option_set() -> None:
    data = example_data()
    del data["options"]["rating7"]
    with pytest.raises(WordingOverlayError, match=r"options\.q29: missing labels"):
        parse_overlay(dump(data))
    data["options"]["q29"] = {c: f"[q29 {c}]" for c in range(1, 8)}
    data["options"]["q30"] = {c: f"[q30 {c}]" for c in range(1, 8)}
    form = localize(get_registry().get("eortc_qlq_c30"), "zh_Hans", parse_overlay(dump(data)))
    assert form.option_label("q30", 2) == "[q30 2]"


def test_instrument_and_version_must_match() -> None:
    data = example_data()
    data["instrument_version"] = "2.0"
    with pytest.raises(WordingOverlayError, match=r"instrument_version: '2\.0' does not match"):
        parse_overlay(dump(data))
    data = example_data()
    data["instrument"] = "eortc_qlq_c99"
    with pytest.raises(WordingOverlayError, match=r"instrument: unknown instrument 'eortc_qlq_c99'"):
        parse_overlay(dump(data))


def test_structure_errors_name_the_field() -> None:
    data = example_data()
    del data["source"]
    with pytest.raises(WordingOverlayError, match=r"^<text>: source: missing required field"):
        read_overlay(dump(data))
    data = example_data()
    data["items"]["q1"] = 12
    with pytest.raises(WordingOverlayError, match=r"items\.q1: expected string, got int"):
        read_overlay(dump(data))
    with pytest.raises(WordingOverlayError, match="not valid YAML"):
        read_overlay("items: [\n  nope")


def test_str_file_name_is_not_mistaken_for_text() -> None:
    with pytest.raises(WordingOverlayError, match="pass a pathlib.Path"):
        parse_overlay(str(EXAMPLE))


def test_json_overlay_with_string_codes(tmp_path: Path) -> None:
    data = eq5d_overlay()
    path = tmp_path / "eq-zh.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    overlay = parse_overlay(path)
    form = localize(get_registry().get("eq5d5l"), "zh_Hans", overlay)
    assert form.option_label("mo", 5) == "[mobility 5]"
    assert form.item("vas").anchors == ("[worst]", "[best]")


def test_vas_anchors_required() -> None:
    data = eq5d_overlay()
    del data["anchors"]
    with pytest.raises(WordingOverlayError, match=r"anchors\.vas: missing anchors"):
        parse_overlay(dump(data))


def test_language_not_shipped_needs_page_titles() -> None:
    data = eq5d_overlay("zh_Hant")
    with pytest.raises(WordingOverlayError, match=r"pages\.p1: missing title"):
        parse_overlay(dump(data))
    data["pages"] = {"p1": "[頁一]", "p2": "[頁二]"}
    eq = get_registry().get("eq5d5l")
    form = localize(eq, "zh_Hant", parse_overlay(dump(data)))
    assert form.page("p2").title == "[頁二]"
    with pytest.raises(MissingLanguageError):
        localize(eq, "zh_Hant")


def test_overlay_text_round_trips() -> None:
    overlay = parse_overlay(EXAMPLE)
    again = parse_overlay(overlay_text(overlay))
    assert (again.items, again.options, again.pages, again.wording_version) == (
        overlay.items,
        overlay.options,
        overlay.pages,
        overlay.wording_version,
    )


# ---------------------------------------------------------------- recordings


def _with_audio(tmp_path: Path) -> Path:
    from tests.audio_overlay import write_overlay

    return write_overlay(tmp_path)


def test_recordings_are_read_stored_by_digest_and_round_trip(tmp_path: Path) -> None:
    import hashlib

    from qol_app.instruments.wording import load_recordings
    from tests.audio_overlay import wav_bytes

    overlay = parse_overlay(_with_audio(tmp_path))
    assert overlay.audio is not None and overlay.audio.items["q1"] == "audio/q1.wav"
    stored, recordings = load_recordings(overlay, tmp_path)
    assert len(recordings) == 42 and {r.content_type for r in recordings.values()} == {"audio/wav"}
    q1 = hashlib.sha256(wav_bytes(310)).hexdigest()
    assert stored.audio is not None and stored.audio.items["q1"] == f"sha256:{q1}"
    assert recordings[q1].data == wav_bytes(310)
    again = parse_overlay(overlay_text(stored))
    assert again.audio == stored.audio
    view = localize(get_registry().get("eortc_qlq_c30"), "zh_Hans", again)
    assert view.item("q1").audio == q1
    assert view.item("q1").options[0].audio == hashlib.sha256(wav_bytes(710)).hexdigest()
    assert view.item("q29").options[6].audio == hashlib.sha256(wav_bytes(870)).hexdigest()
    assert view.instructions_audio == hashlib.sha256(wav_bytes(200)).hexdigest()
    # an overlay read from its file names paths, not recordings: nothing to play yet
    assert localize(get_registry().get("eortc_qlq_c30"), "zh_Hans", overlay).item("q1").audio is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", None),
        (b"ID3\x04\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x00", "audio/mpeg"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"fLaC\x00\x00", "audio/flac"),
        (b"\x00\x00\x00\x20ftypM4A ", "audio/mp4"),
        (b"\x1a\x45\xdf\xa3\x01", "audio/webm"),
        (b"<html><body>", None),
        (b"", None),
    ],
)
def test_recording_formats_are_told_by_their_first_bytes(data: bytes, expected: str | None) -> None:
    from qol_app.instruments.wording import sniff_audio

    assert sniff_audio(data) == expected


def test_option_recordings_are_optional_but_complete(tmp_path: Path) -> None:
    path = _with_audio(tmp_path)
    text = path.read_text(encoding="utf-8")
    without = text[: text.index("  options:\n    eortc4:\n      1: audio/")]
    path.write_text(without, encoding="utf-8")
    assert parse_overlay(path).audio.options == {}  # type: ignore[union-attr]
    path.write_text(text.replace("      3: audio/eortc4-3.wav\n", ""), encoding="utf-8")
    with pytest.raises(WordingOverlayError, match=r"audio\.options\.eortc4\.3: missing recording"):
        parse_overlay(path)
