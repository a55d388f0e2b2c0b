"""Message texts: the Jinja templates in ``templates/messages/``, rendered in one language.

The services take a ``render(template, language, context) -> (subject, body)`` callable; this
module builds it from the Flask app (its Jinja environment and gettext catalogs), so the
services themselves need no Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask
from flask_babel import force_locale


def app_renderer(app: Flask) -> Callable[[str, str, Mapping[str, Any]], tuple[str, str]]:
    """A renderer over ``app``'s templates; call it inside an app context."""

    def render(template: str, language: str, context: Mapping[str, Any]) -> tuple[str, str]:
        with force_locale(language):
            module = app.jinja_env.get_template(f"messages/{template}").make_module({**context, "language": language})
            return str(getattr(module, "subject", "")).strip(), str(module).strip()

    return render
