"""The one rule for where a ``next`` (or any user-supplied redirect target) may send a browser.

A target is kept only when it is a path on this site: one leading ``/``, no scheme or host once
parsed and percent-decoded, no control characters (tab, CR, LF, NUL...) and no backslash, which
browsers drop or read as ``/`` (``/\\t/evil.example`` and ``/\\evil.example`` both open
``evil.example``). Anything else gives the caller's default page. Every view that redirects to
a target it did not build itself goes through :func:`safe_next`.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote, urlsplit

MAX_LENGTH = 2000


def _control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _suspicious(value: str) -> bool:
    if "\\" in value or any(_control(c) for c in value):
        return True
    # Compatibility forms (a full-width solidus) normalised, as some URL parsers do.
    start = unicodedata.normalize("NFKC", value[:3])
    return not start.startswith("/") or start.startswith("//")


def is_local_path(target: object, within: str = "/") -> bool:
    """Whether ``target`` is a same-site path under ``within`` (see the module doc)."""
    if not isinstance(target, str) or not target or len(target) > MAX_LENGTH:
        return False
    decoded = target
    for _ in range(3):  # a value decoded once by the framework may still hide an encoded slash
        if _suspicious(decoded):
            return False
        again = unquote(decoded)
        if again == decoded:
            break
        decoded = again
    else:
        if _suspicious(decoded):
            return False
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return False
    return target.startswith(within)


def safe_next(target: object, default: str, *, within: str = "/") -> str:
    """``target`` if it is a same-site path under ``within``, else ``default``."""
    return target if is_local_path(target, within) else default  # type: ignore[return-value]
