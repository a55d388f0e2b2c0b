"""Locales: the one selector for UI strings and helpers to show dates in a person's zone.

UI strings go through gettext; instrument wording is data (see ``qol_app.instruments``)
and never falls back silently to another language.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from babel import Locale, support
from babel.dates import format_date, format_time
from flask import Flask, current_app, g, request, session
from flask_babel import get_locale, get_translations

from qol_app.extensions import babel
from qol_app.paths import TRANSLATIONS_DIR

LANGUAGE_NAMES = {"en": "English", "zh_Hans": "简体中文"}


def supported() -> list[str]:
    return list(current_app.config["LANGUAGES"])


def normalise(tag: str | None) -> str | None:
    """Map a browser or user language tag to a supported locale (zh-CN, zh-Hans, zh -> zh_Hans)."""
    if not tag:
        return None
    tag = tag.replace("-", "_")
    langs = supported()
    if tag in langs:
        return tag
    base = tag.split("_")[0].lower()
    if base == "zh" and "zh_Hans" in langs:
        return "zh_Hans"
    return base if base in langs else None


def select_locale() -> str:
    """Explicit order: the signed-in patient's language, the staff user's preference,
    a choice made on this browser, the browser's languages, then the default."""
    if "locale" in g:
        return g.locale
    locale = None
    patient = g.get("patient")
    staff = g.get("staff")
    if patient is not None:
        locale = normalise(patient.language)
    elif staff is not None:
        locale = normalise(staff.language)
    if locale is None and request:
        locale = normalise(session.get("lang"))
        if locale is None:
            for tag, _q in request.accept_languages:
                locale = normalise(tag)
                if locale:
                    break
    g.locale = locale or current_app.config["BABEL_DEFAULT_LOCALE"]
    return g.locale


def select_timezone() -> str:
    patient = g.get("patient")
    return patient.tz if patient is not None else "UTC"


def local_date(value: dt.date, locale: str) -> str:
    """A date in the reader's own format (e.g. 2026年11月24日 or Nov 24, 2026)."""
    return format_date(value, format="medium", locale=locale)


def local_datetime(value: dt.datetime, tz: str, locale: str) -> str:
    """An instant in zone ``tz``, in the reader's format, to the minute (never seconds)."""
    local = value.astimezone(ZoneInfo(tz))
    pattern = str(Locale.parse(locale).datetime_formats["medium"])  # e.g. "{1}, {0}" or "{1} {0}"
    return pattern.format(
        format_time(local, format="short", locale=locale), format_date(local.date(), format="medium", locale=locale)
    )


def init_app(app: Flask) -> None:
    babel.init_app(
        app,
        locale_selector=select_locale,
        timezone_selector=select_timezone,
        default_translation_directories=str(_translations_dir(app)),
    )
    # added to the environment by the jinja2.ext.i18n extension (Flask-Babel loads it)
    app.jinja_env.install_gettext_callables(gettext=_gettext, ngettext=_ngettext, newstyle=True)  # type: ignore[attr-defined]
    app.jinja_env.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES
    app.jinja_env.filters["local_date"] = lambda d: local_date(d, select_locale())
    app.context_processor(lambda: {"html_lang": select_locale().replace("_", "-"), "current_locale": select_locale()})


def _translations_dir(app: Flask):
    return TRANSLATIONS_DIR


#: UI catalogs by locale for templates. Flask-Babel resolves the catalog anew for every string
#: (about 10 us each, a third of a survey page's rendering); the catalogs never change at runtime.
_CATALOGS: dict[Locale | None, support.NullTranslations] = {}


def _catalog() -> support.NullTranslations:
    locale = get_locale()  # Flask-Babel's, so force_locale() is honoured
    catalog = _CATALOGS.get(locale)
    if catalog is None:
        catalog = _CATALOGS[locale] = get_translations()
    return catalog


def _gettext(message: str) -> str:
    return _catalog().ugettext(message)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return _catalog().ungettext(singular, plural, n)
