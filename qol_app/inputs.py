"""The one input filter: what any form, URL or query parameter may carry into the app.

* Every form derives from :class:`Form`. Before any field sees the request, a value made only of
  whitespace becomes empty (so "   " is "missing", never stored as an answer, phone or reason),
  and a field whose text holds a control character (NUL, escape, ...; line breaks and tabs only
  in multi-line text) fails with a message in the user's language. PostgreSQL cannot store a NUL
  at all and SQLite would: this keeps the two the same, and nothing typed is silently changed.
* Ids in URLs go through :class:`DatabaseInt`, registered as the ``int`` converter: a number
  beyond the database's integer range matches no route (404), instead of failing in the driver.
* Integer and text query parameters are read with :func:`int_arg` and :func:`text_arg`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from flask import abort, request
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from werkzeug.datastructures import MultiDict
from werkzeug.routing import IntegerConverter
from wtforms import Field, TextAreaField

#: The largest id or count the database's integer columns hold (PostgreSQL ``integer``).
MAX_DB_INT = 2**31 - 1
#: Control characters a multi-line text may hold.
_LINE_BREAKS = frozenset("\n\r\t")


def control_characters(value: str, *, multiline: bool = False) -> bool:
    """Whether ``value`` holds a control character (line breaks and tabs allowed when ``multiline``)."""
    return any(unicodedata.category(c) == "Cc" and not (multiline and c in _LINE_BREAKS) for c in value)


def clean_formdata(data: Any) -> Any:
    """A copy of the posted form with whitespace-only values emptied (files and other values kept)."""
    if data is None or not hasattr(data, "items"):
        return data
    pairs = data.items(multi=True) if hasattr(data, "getlist") else data.items()
    return MultiDict([(k, "" if isinstance(v, str) and v.strip() == "" else v) for k, v in pairs])


def _refuse_control_characters(multiline: bool):
    def check(value: Any) -> Any:
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, str) and control_characters(v, multiline=multiline) for v in values):
            raise ValueError(_("This contains characters that cannot be stored (such as control characters)."))
        return value

    return check


class Form(FlaskForm):
    """Base of every form in the app: the shared input filter (module doc) applied to each field."""

    class Meta:
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            # wtforms combines the Meta classes of the form's bases at runtime (FlaskForm.Meta)
            wrapped = super().wrap_formdata(form, formdata)  # type: ignore[misc]
            if wrapped is None and formdata is _Auto and request.method == "POST":
                # A POST with an empty body is a form sent empty, not one never sent: without this
                # every field would take its default and pass (an export of everything, say).
                wrapped = MultiDict()
            return clean_formdata(wrapped)

        def bind_field(self, form: Any, unbound_field: Any, options: dict[str, Any]) -> Any:
            multiline = issubclass(unbound_field.field_class, TextAreaField)
            own = tuple(unbound_field.kwargs.get("filters", ()))
            options = dict(options, filters=(_refuse_control_characters(multiline), *own))
            return super().bind_field(form, unbound_field, options)  # type: ignore[misc]

    def required_when(self) -> Iterable[tuple[Field, bool, Any]]:
        """``(field, missing, message)`` for each field another field's value makes required.

        Checked by :meth:`validate` after every field's own validators, not as an inline
        ``validate_<field>``: ``Optional()`` ends a field's chain on an empty value before one
        could run. The conditions may read the fields' errors (the chains have run)."""
        return ()

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        for field, missing, message in self.required_when():
            if missing:
                field.errors = [*field.errors, message]
                valid = False
        return valid


class DatabaseInt(IntegerConverter):
    """``<int:...>`` limited to what an integer column holds: a larger number is a 404."""

    def __init__(self, map: Any, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_DB_INT) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max)


def int_arg(name: str, default: int, *, minimum: int = 1, maximum: int = MAX_DB_INT) -> int:
    """An integer query parameter: ``default`` when absent or not a number, 404 outside the range."""
    raw = request.args.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    if not minimum <= value <= maximum:
        abort(404)
    return value


def text_arg(name: str, *, max_length: int = 200) -> str:
    """A text query parameter, trimmed; empty when absent, too long or holding control characters."""
    raw = (request.args.get(name) or "").strip()
    if len(raw) > max_length or control_characters(raw):
        return ""
    return raw
