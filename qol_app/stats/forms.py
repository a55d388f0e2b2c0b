"""The export form: filters, as-of time, formats and options.

Labels are lazily translated: the page shows in the staff member's language.
"""

from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, DateField, FloatField, RadioField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from qol_app.export.run import FORMAT_LABELS, FORMATS, parse_as_of
from qol_app.inputs import Form


def choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms 3.3+ wants them."""
    return [SelectChoice(value, label) for value, label in pairs]


class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes (usable without JavaScript, unlike a multiple select on phones)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _as_of(form: Form, field: StringField) -> None:
    if field.data and field.data.strip():
        try:
            parse_as_of(field.data)
        except ValueError:
            raise ValidationError(
                _l("Not an ISO 8601 date or time (e.g. 2026-03-01T00:00:00Z): %(text)s", text=field.data.strip())
            ) from None


class ExportForm(Form):
    sites = MultiCheckboxField(_l("Sites (none ticked = all)"), choices=[], validate_choice=True)
    arms = MultiCheckboxField(
        _l("Arms (none ticked = both)"),
        choices=choices([("A", _l("A: intrathecal + systemic")), ("B", _l("B: systemic alone"))]),
    )
    instruments = MultiCheckboxField(_l("Instruments (none ticked = all)"), choices=[])
    date_from = DateField(_l("Timepoints with target date from"), validators=[Optional()])
    date_to = DateField(_l("to (inclusive)"), validators=[Optional()])
    as_of = StringField(_l("As-of time (UTC, e.g. 2026-03-01T00:00:00Z; empty = now)"), validators=[_as_of])
    formats = MultiCheckboxField(
        _l("Formats"), choices=choices((f, FORMAT_LABELS[f]) for f in FORMATS), default=["csv"]
    )
    labels = RadioField(
        _l("Variable and value labels in"), choices=choices([("en", "English"), ("zh_Hans", "简体中文")]), default="en"
    )
    threshold = FloatField(
        _l("Deterioration threshold (points on 0-100 scales)"), default=10.0, validators=[NumberRange(min=0.5, max=100)]
    )
    iso_dates = BooleanField(_l("Calendar dates (ISO) instead of study days only"))

    def validate_formats(self, field: MultiCheckboxField) -> None:
        if not field.data:
            raise ValidationError(_l("Choose at least one format."))

    def validate_date_to(self, field: DateField) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError(_l("The date range ends before it starts."))

    def as_of_value(self, now: dt.datetime) -> dt.datetime:
        """The as-of time asked for, or now (whole seconds) when left empty."""
        text = (self.as_of.data or "").strip()
        return parse_as_of(text) if text else now.replace(microsecond=0)
