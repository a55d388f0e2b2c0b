"""UI translation catalogs: complete for zh_Hans and not stale against the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

pytestmark = pytest.mark.xdist_group("catalogs")  # one pybabel extract, one worker

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "qol_app" / "translations"


def _ids(catalog) -> set[str]:
    return {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}


@pytest.fixture(scope="module")
def fresh_template(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("pot") / "messages.pot"
    CommandLineInterface().run(
        [
            "pybabel",
            "-q",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "--no-location",
            "-o",
            str(out),
            str(ROOT),
        ]
    )
    with out.open("rb") as fh:
        return _ids(read_po(fh))


def test_template_is_not_stale(fresh_template):
    with (TRANSLATIONS / "messages.pot").open("rb") as fh:
        committed = _ids(read_po(fh))
    missing = sorted(fresh_template - committed)
    extra = sorted(committed - fresh_template)
    assert not missing and not extra, (
        f"translations/messages.pot is stale; run `make catalogs`. New: {missing[:10]} Gone: {extra[:10]}"
    )


@pytest.mark.parametrize("locale", ["zh_Hans", "en"])
def test_catalog_covers_every_message(fresh_template, locale):
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh)
    ids = _ids(catalog)
    assert fresh_template <= ids, f"{locale} catalog lacks: {sorted(fresh_template - ids)[:10]}"
    if locale == "zh_Hans":
        untranslated = sorted(
            (m.id if isinstance(m.id, str) else m.id[0])
            for m in catalog
            if m.id and (m.fuzzy or not (m.string if isinstance(m.string, str) else all(m.string)))
        )
        assert not untranslated, f"zh_Hans untranslated or fuzzy: {untranslated[:10]}"
