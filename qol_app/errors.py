"""Errors that services raise for people to read: a message id with parameters, never prose.

A service cannot know the reader's language (it must not import Flask), so it raises
:class:`ServiceError` with an English message id marked by :func:`N_` for extraction and its
parameters apart. The web layer renders it through gettext in the reader's language
(``qol_app.web_errors.message``); the CLI and the logs use ``str(error)``, the English text.

Plain Python: imported by services and domain code alike.
"""

from __future__ import annotations

from typing import Any


def N_(message: str) -> str:  # noqa: N802 - gettext's conventional name for "mark, do not translate now"
    """Mark ``message`` for the catalogs (pybabel extracts ``N_`` by default) and return it unchanged."""
    return message


class ServiceError(ValueError):
    """A request a service refuses, as ``msgid % params`` (``%(name)s`` placeholders).

    A ``ValueError`` so existing callers that catch ``ValueError`` keep working.
    """

    def __init__(self, msgid: str, /, **params: Any) -> None:
        self.msgid = msgid
        self.params = params
        super().__init__(msgid % params if params else msgid)


__all__ = ["N_", "ServiceError"]
