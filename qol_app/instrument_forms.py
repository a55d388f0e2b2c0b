"""WTForms for instrument pages: one fresh ``FlaskForm`` subclass per instrument/page/locale (web
layer, beside ``inputs.py``; the instruments themselves are plain values in ``instruments/``).

Field types come from a registry keyed by item kind, field names are item ids and the
submitted data are codes (never labels). No field is required: a patient may skip any
item, and the page view turns a gap into a reminder and then an explicit skip.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable, Iterable
from typing import Any

from babel import support
from flask import current_app, has_request_context
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from wtforms import DecimalField, Field, HiddenField, IntegerField, RadioField
from wtforms.fields.choices import SelectChoice
from wtforms.i18n import messages_path
from wtforms.validators import NumberRange, Optional, Regexp, ValidationError

from qol_app.inputs import Form
from qol_app.instruments.wording import LocalizedItem, LocalizedPage


class LocaleDecimalField(DecimalField):
    """A decimal that also accepts a comma as the decimal separator (37,5); only finite numbers
    (``NaN``, ``sNaN`` and ``Infinity`` parse as decimals, but are not answers)."""

    data: decimal.Decimal | None

    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist and isinstance(valuelist[0], str):
            valuelist = [valuelist[0].strip().replace(",", ".").replace("，", ".").replace("。", ".")]
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(str(NOT_A_NUMBER)) from None
        if isinstance(self.data, decimal.Decimal) and not self.data.is_finite():
            self.data = None
            raise ValueError(str(NOT_A_NUMBER))


#: Plain words for patients (WTForms' own say "Not a valid decimal value").
NOT_A_NUMBER = _l("Please write the number with digits only, for example 37.5.")
NOT_A_WHOLE_NUMBER = _l("Please write a whole number with digits only, for example 70.")
NOT_AN_OPTION = _l("Please tap one of the answers below.")


class PlainIntegerField(IntegerField):
    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist and isinstance(valuelist[0], str):
            valuelist = [valuelist[0].strip()]
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(str(NOT_A_WHOLE_NUMBER)) from None


class PlainRadioField(RadioField):
    def process_formdata(self, valuelist: list[Any]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(str(NOT_AN_OPTION)) from None

    def pre_validate(self, form: Any) -> None:
        try:
            super().pre_validate(form)
        except ValidationError:
            raise ValidationError(str(NOT_AN_OPTION)) from None


def _choice(item: LocalizedItem) -> Field:
    return PlainRadioField(
        item.text,
        choices=[SelectChoice(option.code, option.label) for option in item.options],
        coerce=int,
        validators=[Optional()],
    )


def _number(item: LocalizedItem) -> Field:
    spec = item.item
    return LocaleDecimalField(
        item.text,
        places=None,
        validators=[
            Optional(),
            NumberRange(
                min=decimal.Decimal(str(spec.min)),
                max=decimal.Decimal(str(spec.max)),
                message=_l("Please enter a number from %(min)s to %(max)s."),
            ),
        ],
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )


def _vas(item: LocalizedItem) -> Field:
    spec = item.item
    if spec.min is None or spec.max is None:  # the instrument schema requires both on a VAS item
        raise ValueError(f"VAS item {spec.id!r} has no min or max")
    return PlainIntegerField(
        item.text,
        validators=[
            Optional(),
            NumberRange(
                min=int(spec.min), max=int(spec.max), message=_l("Please enter a whole number from %(min)s to %(max)s.")
            ),
        ],
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )


#: item kind -> field builder; a new item type is one entry here plus a macro.
FIELD_TYPES: dict[str, Callable[[LocalizedItem], Field]] = {"choice": _choice, "number": _number, "vas": _vas}

#: Optional fields a small script fills (device clock); the server's receipt time is always recorded.
CLIENT_FIELDS = ("client_time", "client_offset")
CLIENT_TIME = re.compile(r"^[0-9T:.+\-Z ]{1,32}$")
CLIENT_OFFSET = re.compile(r"^[+-]?[0-9]{1,4}$")


#: WTForms' own message catalogs by locale: Flask-WTF loads one from disk on every request.
_WTFORMS_CATALOGS: dict[str, support.NullTranslations] = {}


def _wtforms_catalog() -> support.NullTranslations | None:
    """The same catalog as ``flask_wtf.i18n._get_translations``, loaded once per locale per process."""
    if not has_request_context() or "babel" not in current_app.extensions:
        return None
    locale = get_locale()
    key = str(locale)
    catalog = _WTFORMS_CATALOGS.get(key)
    if catalog is None:
        catalog = _WTFORMS_CATALOGS[key] = support.Translations.load(messages_path(), [locale], domain="wtforms")
    return catalog


class _WTFormsTranslations:
    """Flask-WTF's translations object (``flask_wtf.i18n.Translations``) over the cached catalogs."""

    def gettext(self, string: str) -> str:
        catalog = _wtforms_catalog()
        return string if catalog is None else catalog.ugettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        catalog = _wtforms_catalog()
        if catalog is None:
            return singular if n == 1 else plural
        return catalog.ungettext(singular, plural, n)


_TRANSLATIONS = _WTFormsTranslations()


class PageForm(Form):
    """Base of every generated page form: the hidden bookkeeping fields."""

    class Meta:
        def get_translations(self, form: Any) -> Any:
            if not current_app.config.get("WTF_I18N_ENABLED", True):
                # wtforms combines the Meta classes of the form's bases at runtime (FlaskForm.Meta)
                return super().get_translations(form)  # type: ignore[misc]
            return _TRANSLATIONS

    # Item ids the patient was already reminded of; sending them empty again stores explicit skips.
    confirm_skip = HiddenField(validators=[Optional(), Regexp(r"^[a-z0-9_,]{0,600}$")])
    # Not validated: an odd device clock is dropped by ``client_clock``, never a refused page.
    client_time = HiddenField()
    client_offset = HiddenField()
    # Set to 1 by static/listen.js when the read-aloud or a recording is played on the page.
    aid_listen = HiddenField()
    aid_audio = HiddenField()

    item_ids: tuple[str, ...] = ()

    def answers(self) -> dict[str, int | float | None]:
        """Posted answers keyed by item id: an int code/value, a float, or None when left empty."""
        out: dict[str, int | float | None] = {}
        for item_id in self.item_ids:
            value = self[item_id].data
            out[item_id] = float(value) if isinstance(value, decimal.Decimal) else value
        return out

    def confirmed_skips(self) -> set[str]:
        return {part for part in (self.confirm_skip.data or "").split(",") if part in self.item_ids}

    def client_clock(self) -> tuple[str | None, int | None]:
        return client_clock(self.client_time.data, self.client_offset.data)

    def aids(self) -> tuple[bool, bool]:
        """(read-aloud played, recording played) on this page, as the script reported them."""
        return self.aid_listen.data == "1", self.aid_audio.data == "1"


def client_clock(time_text: str | None, offset_text: str | None) -> tuple[str | None, int | None]:
    """The device's reported local time and UTC offset (minutes), or None for what is missing or odd.

    Optional metadata a small script fills: a value that is not a plausible clock is dropped,
    never a reason to refuse the page (the server's receipt time is always recorded).
    """
    time_value = time_text if time_text and CLIENT_TIME.match(time_text) else None
    minutes = None
    if offset_text and CLIENT_OFFSET.match(offset_text):
        minutes = int(offset_text) if -1080 <= int(offset_text) <= 1080 else None
    return time_value, minutes


#: Built form classes, keyed by instrument, page id, locale and the identity of the (frozen) items,
#: which are kept alongside so an id can never be reused while its entry lives.
_CLASSES: dict[tuple[str, str, str, tuple[int, ...]], tuple[tuple[LocalizedItem, ...], type[PageForm]]] = {}
_CLASSES_MAX = 256


def build_page_form(
    instrument_id: str, page: LocalizedPage, items: Iterable[LocalizedItem], locale: str
) -> type[PageForm]:
    """The ``PageForm`` subclass for ``items`` of ``page`` (the ones presented to this patient).

    Built once per instrument, page, locale and items, then reused (a class holds only unbound
    fields; every request gets its own form instance).
    """
    items = tuple(items)
    key = (instrument_id, page.id, locale, tuple(id(item) for item in items))
    hit = _CLASSES.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], items, strict=True)):
        return hit[1]
    form_class = _build_page_form(instrument_id, page, items, locale)
    if len(_CLASSES) >= _CLASSES_MAX:
        _CLASSES.clear()
    _CLASSES[key] = (items, form_class)
    return form_class


def _build_page_form(
    instrument_id: str, page: LocalizedPage, items: tuple[LocalizedItem, ...], locale: str
) -> type[PageForm]:
    attrs: dict[str, Any] = {}
    ids: list[str] = []
    for item in items:
        if hasattr(PageForm, item.id):
            raise ValueError(f"{instrument_id}: item id {item.id!r} clashes with a form attribute")
        attrs[item.id] = FIELD_TYPES[item.kind](item)
        ids.append(item.id)
    attrs["item_ids"] = tuple(ids)
    name = f"{instrument_id}_{page.id}_{locale}_Form"
    return type(name, (PageForm,), attrs)
