"""Instrument files: every shipped file valid and complete; malformed files named precisely."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from qol_app.datafile import DataFileError
from qol_app.instruments import (
    DEFAULT_DIRECTORY,
    MissingLanguageError,
    get_registry,
    instrument_files,
    load_instrument,
    load_registry,
    load_value_set,
    localize,
    parse_instrument,
)

SHIPPED = instrument_files(DEFAULT_DIRECTORY)
C30_FILE = DEFAULT_DIRECTORY / "eortc_qlq_c30.yaml"


def c30_data() -> dict[str, Any]:
    return yaml.safe_load(C30_FILE.read_text(encoding="utf-8"))


def write(tmp_path: Path, data: Any, name: str = "eortc_qlq_c30.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------ shipped files


def test_every_expected_instrument_is_shipped() -> None:
    assert {p.stem for p in SHIPPED} == {"eortc_qlq_c30", "eortc_qlq_bn20", "eortc_qlq_br23", "eq5d5l", "symptom_diary"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_file_loads_and_is_complete_in_every_language(path: Path) -> None:
    instrument = load_instrument(path)
    assert instrument.id == path.stem
    assert instrument.languages == ("en", "zh_Hans")
    for locale in instrument.languages:
        form = localize(instrument, locale)
        assert form.title and form.instructions
        assert [page.id for page in form.pages] == [page.id for page in instrument.pages]
        assert {item.id for item in form.items} == set(instrument.item_ids)
        for page in form.pages:
            assert page.title and 1 <= len(page.items) <= 6
            for item in page.items:
                assert item.text.strip()
                assert all(option.label.strip() for option in item.options)
        for scale in instrument.scales:
            assert scale.name[locale].strip()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_zh_texts_are_chinese_and_differ_from_english(path: Path) -> None:
    instrument = load_instrument(path)
    for item in instrument.items:
        assert item.text["zh_Hans"] != item.text["en"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in item.text["zh_Hans"]), item.id


def test_registry_maps_ids_and_is_cached() -> None:
    registry = get_registry()
    assert set(registry) == {p.stem for p in SHIPPED}
    assert registry.get("eortc_qlq_c30").version == "3.0"
    assert get_registry() is registry
    assert "CN_2017" in registry.value_sets


def test_registry_get_unknown_id_names_it() -> None:
    with pytest.raises(ValueError, match="'eortc_qlq_c99'"):
        get_registry().get("eortc_qlq_c99")


def test_c30_structure() -> None:
    c30 = get_registry().get("eortc_qlq_c30")
    assert c30.item_ids == tuple(f"q{i}" for i in range(1, 31))
    for item in c30.items:
        expected = (1, 2, 3, 4, 5, 6, 7) if item.id in ("q29", "q30") else (1, 2, 3, 4)
        assert item.kind == "choice" and item.codes == expected
    assert c30.option_sets["eortc4"][0].label["en"] == "Not at all"
    assert c30.option_sets["eortc4"][3].label["en"] == "Very much"
    assert c30.option_sets["rating7"][0].label["en"].endswith("Very poor")
    assert c30.option_sets["rating7"][6].label["en"].endswith("Excellent")
    last_page = c30.pages[-1]
    assert last_page.items == ("q29", "q30")
    assert c30.wording == "own_descriptive"
    assert c30.wording_version == "own-descriptive:3.0"


def test_module_item_ids() -> None:
    registry = get_registry()
    assert registry.get("eortc_qlq_bn20").item_ids == tuple(f"q{i}" for i in range(1, 21))
    assert registry.get("eortc_qlq_br23").item_ids == tuple(f"q{i}" for i in range(1, 24))
    eq = registry.get("eq5d5l")
    assert eq.item_ids == ("mo", "sc", "ua", "pd", "ad", "vas")
    assert all(eq.item(d).codes == (1, 2, 3, 4, 5) for d in ("mo", "sc", "ua", "pd", "ad"))
    vas = eq.item("vas")
    assert (vas.kind, vas.min, vas.max) == ("vas", 0, 100)


def test_diary_items_codes_and_gradings() -> None:
    diary = get_registry().get("symptom_diary")
    assert diary.version == "1.0" and diary.wording == "original"
    assert set(diary.item_ids) == {
        "temperature",
        "headache",
        "neck_stiffness",
        "nausea",
        "vomiting",
        "back_pain",
        "confusion",
        "seizure",
        "new_weakness",
        "bladder_bowel",
        "vision",
        "ommaya_site",
        "chills",
    }
    gradings = {item.id: item.grading for item in diary.items if item.grading}
    assert gradings == {
        "headache": "severity",
        "nausea": "severity",
        "back_pain": "severity",
        "vision": "severity",
        "vomiting": "frequency",
    }
    for item_id in gradings:
        assert diary.item(item_id).codes == (0, 1, 2, 3, 4)
    for item_id in ("neck_stiffness", "confusion", "seizure", "new_weakness", "bladder_bowel", "chills"):
        assert diary.item(item_id).codes == (0, 1)
    ommaya = diary.item("ommaya_site")
    assert [o.label["en"] for o in ommaya.options] == ["No problem", "Pain", "Redness", "Swelling", "Fluid leaking"]
    assert ommaya.tags == ("ommaya",)
    temperature = diary.item("temperature")
    assert (
        temperature.kind,
        temperature.min,
        temperature.max,
        temperature.step,
        temperature.unit,
        temperature.optional,
    ) == ("number", 34.0, 43.0, 0.1, "°C", True)
    assert diary.scale("WORST").items == tuple(item.id for item in diary.items if item.grading)
    assert "24" in diary.instructions["en"] and "24" in diary.instructions["zh_Hans"]


def test_localized_gives_texts_for_rendering() -> None:
    form = localize(get_registry().get("eortc_qlq_c30"), "zh_Hans")
    assert form.locale == "zh_Hans" and not form.licensed
    assert form.wording_version == "own-descriptive:3.0"
    assert form.page("p1").title == "体力活动"
    assert form.item("q9").text == "疼痛"
    assert form.option_label("q9", 1) == "完全没有"
    assert [o.code for o in form.item("q30").options] == [1, 2, 3, 4, 5, 6, 7]
    assert form.item("q30").kind == "choice"
    vas = localize(get_registry().get("eq5d5l"), "en").item("vas")
    assert vas.anchors is not None and vas.anchors[0].startswith("0")


@pytest.mark.parametrize("locale", ["fr", "zh_Hant", "zh", "EN", ""])
def test_localized_unknown_locale_raises(locale: str) -> None:
    with pytest.raises(MissingLanguageError, match=repr(locale)):
        localize(get_registry().get("eortc_qlq_c30"), locale)


# ------------------------------------------------------------------ malformed files


def _inline_options(data: dict[str, Any]) -> None:
    data["items"][3]["options"] = [
        {"code": "one", "label": {"en": "x", "zh_Hans": "x"}},
        {"code": 2, "label": {"en": "y", "zh_Hans": "y"}},
    ]


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _append_page_item(data: dict[str, Any]) -> None:
    data["pages"][1]["items"].append("q1")


def _drop_from_pages(data: dict[str, Any]) -> None:
    data["pages"][-1]["items"].remove("q30")


def _duplicate_option(data: dict[str, Any]) -> None:
    data["option_sets"]["eortc4"][1]["code"] = 1


MALFORMED = [
    (_inline_options, "items[3].options[0].code: expected integer"),
    (_set(("items", 5, "id"), "q1"), "items[5].id: duplicate item id 'q1'"),
    (_set(("items", 0, "colour"), "red"), "items[0].colour: unknown field"),
    (_set(("items", 0, "kind"), "slider"), "items[0].kind: 'slider' is not one of"),
    (_set(("items", 2, "options"), "eortc5"), "items[2].options: unknown option set 'eortc5'"),
    (_delete(("items", 0, "text", "zh_Hans")), "items[0].text.zh_Hans: missing text"),
    (_set(("items", 0, "text", "zh_Hans"), " "), "items[0].text.zh_Hans: expected non-empty"),
    (_set(("items", 0, "text", "zh_hans"), "x"), "items[0].text.zh_hans: language not declared"),
    (_delete(("option_sets", "rating7", 6, "label", "zh_Hans")), "option_sets.rating7[6].label.zh_Hans: missing text"),
    (_delete(("pages", 0, "title", "zh_Hans")), "pages[0].title.zh_Hans: missing text"),
    (_delete(("scales", 2, "name", "zh_Hans")), "scales[2].name.zh_Hans: missing text"),
    (_delete(("instructions", "zh_Hans")), "instructions.zh_Hans: missing text"),
    (_duplicate_option, "option_sets.eortc4[1].code: duplicate option code 1"),
    (_set(("version",), 3.0), "version: expected string, got float"),
    (_delete(("version",)), "version: missing required field"),
    (_set(("languages",), ["en", "en"]), "languages[1]: duplicate language 'en'"),
    (
        _set(("items", 0, "options"), [{"code": 1, "label": {"en": "x", "zh_Hans": "x"}}]),
        "items[0].options: expected at least 2 entries",
    ),
    (_append_page_item, "pages[1].items[5]: item 'q1' is already on page 'p1'"),
    (_drop_from_pages, "pages: item 'q30' is on no page"),
    (_set(("pages", 0, "items", 0), "q99"), "pages[0].items[0]: unknown item 'q99'"),
    (_set(("scales", 1, "items", 0), "q99"), "scales[1].items[0]: unknown item 'q99'"),
    (_set(("scales", 0, "range"), 3), "scales[0].range: 3 does not match the codes of 'q29'"),
    (_set(("scales", 3, "type"), "mood"), "scales[3].type: 'mood' is not one of"),
    (_set(("scales", 1, "code"), "QL2"), "scales[1].code: duplicate scale code 'QL2'"),
    (_set(("scales", 15, "components", 0), "XX"), "scales[15].components[0]: unknown scale 'XX'"),
    (_set(("scales", 1, "formula"), "magic"), "scales[1].formula: 'magic' is not one of"),
    (_set(("id",), "eortc_qlq_c31"), "id: 'eortc_qlq_c31' does not match the file name"),
    (_set(("wording",), "official"), "wording: 'official' is not one of"),
]


@pytest.mark.parametrize(("mutate", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_file_names_file_and_field(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = c30_data()
    mutate(data)
    with pytest.raises(DataFileError) as caught:
        load_instrument(write(tmp_path, data))
    assert str(caught.value).startswith(f"eortc_qlq_c30.yaml: {message}"), str(caught.value)


def test_error_carries_file_and_path(tmp_path: Path) -> None:
    data = c30_data()
    _inline_options(data)
    with pytest.raises(DataFileError) as caught:
        load_instrument(write(tmp_path, data))
    assert (caught.value.file, caught.value.field) == ("eortc_qlq_c30.yaml", "items[3].options[0].code")
    assert isinstance(caught.value, ValueError)


def test_missing_zh_text_is_a_load_error_not_a_fallback(tmp_path: Path) -> None:
    data = c30_data()
    del data["items"][29]["text"]["zh_Hans"]
    with pytest.raises(DataFileError, match=r"items\[29\]\.text\.zh_Hans"):
        load_registry(_registry_dir(tmp_path, data))


def _registry_dir(tmp_path: Path, data: dict[str, Any]) -> Path:
    write(tmp_path, data)
    return tmp_path


def test_invalid_yaml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "eortc_qlq_c30.yaml"
    path.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"^eortc_qlq_c30\.yaml: not valid YAML"):
        load_instrument(path)


def test_duplicate_yaml_key_is_an_error() -> None:
    text = C30_FILE.read_text(encoding="utf-8").replace('version: "3.0"', 'version: "3.0"\nversion: "3.1"', 1)
    with pytest.raises(DataFileError, match="duplicate key 'version'"):
        parse_instrument(text, "c30.yaml")


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(DataFileError, match="^x.yaml: expected mapping, got list"):
        parse_instrument("- 1\n", "x.yaml")


def test_number_and_vas_bounds_checked(tmp_path: Path) -> None:
    diary = yaml.safe_load((DEFAULT_DIRECTORY / "symptom_diary.yaml").read_text(encoding="utf-8"))
    bad = copy.deepcopy(diary)
    bad["items"][0]["max"] = 30.0
    with pytest.raises(DataFileError, match=r"items\[0\]\.max: max 30 must be greater"):
        load_instrument(write(tmp_path, bad, "symptom_diary.yaml"))
    bad = copy.deepcopy(diary)
    bad["items"][0]["step"] = -0.1
    with pytest.raises(DataFileError, match=r"items\[0\]\.step"):
        load_instrument(write(tmp_path, bad, "symptom_diary.yaml"))
    eq = yaml.safe_load((DEFAULT_DIRECTORY / "eq5d5l.yaml").read_text(encoding="utf-8"))
    eq["items"][5]["max"] = 99.5
    with pytest.raises(DataFileError, match=r"items\[5\]\.max: expected integer"):
        load_instrument(write(tmp_path, eq, "eq5d5l.yaml"))


def test_scale_conditions_are_checked(tmp_path: Path) -> None:
    br23 = yaml.safe_load((DEFAULT_DIRECTORY / "eortc_qlq_br23.yaml").read_text(encoding="utf-8"))
    br23["scales"][3]["not_applicable_if"] = [{"item": "q15", "in": [9]}]
    with pytest.raises(DataFileError, match=r"scales\[3\]\.not_applicable_if\[0\]\.in\[0\]: 9 is not a code"):
        load_instrument(write(tmp_path, br23, "eortc_qlq_br23.yaml"))


# ------------------------------------------------------------------ value sets


def _copy_eq_dir(tmp_path: Path, value_set: dict[str, Any]) -> Path:
    (tmp_path / "value_sets").mkdir()
    (tmp_path / "eq5d5l.yaml").write_text(
        (DEFAULT_DIRECTORY / "eq5d5l.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    write(tmp_path / "value_sets", value_set, "eq5d5l_cn_2017.yaml")
    return tmp_path


def _cn_2017() -> dict[str, Any]:
    return yaml.safe_load((DEFAULT_DIRECTORY / "value_sets" / "eq5d5l_cn_2017.yaml").read_text(encoding="utf-8"))


def test_value_set_checks_verified_at_load(tmp_path: Path) -> None:
    data = _cn_2017()
    data["decrements"]["mo"][5] = 0.355
    with pytest.raises(DataFileError, match=r"checks\.55555: value set gives -0\.401"):
        load_value_set(write(tmp_path, data, "vs.yaml"))


def test_value_set_must_fit_the_instrument(tmp_path: Path) -> None:
    data = _cn_2017()
    del data["checks"]
    data["decrements"]["mo"][6] = 0.4
    with pytest.raises(DataFileError, match=r"decrements\.mo: levels must be exactly"):
        load_registry(_copy_eq_dir(tmp_path, data))


def test_index_scale_needs_its_value_set(tmp_path: Path) -> None:
    data = _cn_2017()
    data["name"] = "UK_2018"
    with pytest.raises(DataFileError, match=r"eq5d5l\.yaml: scales\[0\]\.value_set: no value set 'CN_2017'"):
        load_registry(_copy_eq_dir(tmp_path, data))


def test_example_overlay_is_not_loaded_as_an_instrument() -> None:
    assert all(not p.name.endswith(".example.yaml") for p in SHIPPED)
    assert (DEFAULT_DIRECTORY / "wording-overlay.example.yaml").exists()
