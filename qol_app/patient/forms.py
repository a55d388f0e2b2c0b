"""Small fixed forms of the patient pages (survey page forms are built per page in
``qol_app.instrument_forms``). Labels are lazy so each request gets its own language."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, PasswordField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, InputRequired, Length, Optional, ValidationError

from qol_app.inputs import Form
from qol_app.instrument_forms import client_clock
from qol_app.services.responses import RELATIONSHIPS

RESPONDENT_LABELS = {
    "self": _l("I am the patient, answering on my own"),
    "self_assisted": _l("I am the patient, and someone is helping me (reading or tapping)"),
    "proxy": _l("I am answering for the patient"),
}
RELATIONSHIP_LABELS = {
    "spouse_partner": _l("Husband, wife or partner"),
    "child": _l("Son or daughter"),
    "parent": _l("Father or mother"),
    "sibling": _l("Brother or sister"),
    "other_relative": _l("Other relative"),
    "friend": _l("Friend"),
    "professional_carer": _l("Paid or professional carer"),
}


class SignInForm(Form):
    pin = PasswordField(
        _l("PIN"), validators=[Optional(), Length(max=16)], render_kw={"inputmode": "numeric", "autocomplete": "off"}
    )


class LanguageForm(Form):
    lang = StringField(validators=[InputRequired(), Length(max=16)])
    next = HiddenField()  # where to go back to: checked by qol_app.redirects.safe_next, never here


class LargePrintForm(Form):
    """The one-tap switch between large print and the usual pages."""

    on = StringField(validators=[InputRequired(), AnyOf(["0", "1"])])
    next = HiddenField()  # checked by qol_app.redirects.safe_next


class RespondentForm(Form):
    respondent = RadioField(
        _l("Who is filling in the questionnaires today?"),
        choices=[SelectChoice(code, label) for code, label in RESPONDENT_LABELS.items()],
        validate_choice=False,
        validators=[
            InputRequired(message=_l("Please choose who is answering.")),
            AnyOf(list(RESPONDENT_LABELS), message=_l("Please choose who is answering.")),
        ],
    )
    relationship = RadioField(
        _l("If you answer for the patient: who are you to them?"),
        choices=[SelectChoice(code, RELATIONSHIP_LABELS[code]) for code in RELATIONSHIPS],
        validate_choice=False,
    )

    def validate_relationship(self, field: RadioField) -> None:
        # Not Optional(): it would stop the chain before this check on an empty field.
        if field.data and field.data not in RELATIONSHIPS:
            raise ValidationError(_l("Please choose who you are to the patient."))
        if self.respondent.data == "proxy" and not field.data:
            raise ValidationError(_l("Please choose who you are to the patient."))

    def relationship_code(self) -> str | None:
        return self.relationship.data if self.respondent.data == "proxy" else None


class SubmitForm(Form):
    client_time = HiddenField()  # device clock: see ``client_clock``
    client_offset = HiddenField()

    def client_clock(self) -> tuple[str | None, int | None]:
        return client_clock(self.client_time.data, self.client_offset.data)
