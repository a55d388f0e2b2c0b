"""Where the data shipped inside the package lives (package data, so an installed wheel finds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

PACKAGE_DIR: Final[Path] = Path(__file__).resolve().parent
#: Instrument definitions, with ``schedules/``, ``alerts/`` and ``value_sets/`` beneath.
QUESTIONNAIRE_DIR: Final[Path] = PACKAGE_DIR / "questionnaires"
#: gettext catalogs for UI strings (``<locale>/LC_MESSAGES/messages.po`` and the compiled ``.mo``).
TRANSLATIONS_DIR: Final[Path] = PACKAGE_DIR / "translations"
