"""WTForms for staff pages (labels lazily translated: each user sees their own language).

Every form that changes existing data carries a required ``reason`` (audited with the change).
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional, Regexp, ValidationError

from qol_app.inputs import Form
from qol_app.labels import MISSED_REASON_LABELS, ROLE_PAIRS
from qol_app.models.schedule import MISSED_REASONS
from qol_app.services.sites import valid_timezone


def choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms 3.3+ wants them."""
    return [SelectChoice(value, label) for value, label in pairs]


PHONE_PATTERN = r"^\+?[0-9 ()-]{5,}$"
LANGUAGE_CHOICES = choices([("zh_Hans", "简体中文"), ("en", "English")])


def reason_field(label=None) -> TextAreaField:
    return TextAreaField(label or _l("Reason for the change"), validators=[InputRequired(), Length(max=255)])


class LoginForm(Form):
    username = StringField(_l("Username"), validators=[InputRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=256)])


class LanguageForm(Form):
    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES, validators=[InputRequired()])


class PasswordChangeForm(Form):
    current = PasswordField(_l("Current password"), validators=[InputRequired(), Length(max=256)])
    new = PasswordField(_l("New password (at least 12 characters)"), validators=[InputRequired(), Length(12, 256)])


def _valid_timezone(form, field) -> None:
    if field.data and not valid_timezone(field.data.strip()):
        raise ValidationError(_l("Unknown time zone (use a name such as Asia/Shanghai).")) from None


class EnrolForm(Form):
    study_id = StringField(
        _l("Study id"),
        validators=[
            InputRequired(),
            Length(max=32),
            Regexp(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", message=_l("Letters, digits, - and _ only.")),
        ],
    )
    site_id = SelectField(_l("Site"), coerce=int, validators=[InputRequired()])
    arm = RadioField(
        _l("Arm"),
        choices=choices(
            [
                ("A", _l("A: intrathecal + systemic")),
                ("B", _l("B: systemic alone")),
            ]
        ),
        validators=[InputRequired()],
    )
    randomization_date = DateField(_l("Randomization date"), validators=[InputRequired()])
    consent_date = DateField(_l("Consent date"), validators=[Optional()])
    language = SelectField(_l("Patient's language"), choices=LANGUAGE_CHOICES, validators=[InputRequired()])
    timezone = StringField(
        _l("Time zone (leave empty for the site's)"), validators=[Optional(), Length(max=64), _valid_timezone]
    )
    email = StringField(
        _l("E-mail for reminders (optional)"),
        validators=[
            Optional(),
            Length(max=255),
            Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("Not an e-mail address.")),
        ],
    )
    phone = StringField(
        _l("Mobile phone for reminders (optional)"),
        validators=[Optional(), Length(max=32), Regexp(r"^\+?[0-9 ()-]{5,}$", message=_l("Not a phone number."))],
    )
    with_pin = BooleanField(_l("Protect the link with a PIN"), default=True)

    preference_keys: tuple[str, ...] = ()

    def preferences(self) -> dict[str, bool]:
        return {key: bool(self[f"pref_{key}"].data) for key in self.preference_keys}


class RotateLinkForm(Form):
    reason = reason_field(_l("Why is a new link needed?"))
    new_pin = BooleanField(_l("Also issue a new PIN"), default=False)


class PinForm(Form):
    action = RadioField(
        _l("PIN"),
        choices=choices(
            [
                ("generate", _l("Generate a new PIN")),
                ("set", _l("Set this PIN")),
                ("remove", _l("Remove the PIN")),
            ]
        ),
        default="generate",
        validators=[InputRequired()],
    )
    pin = StringField(
        _l("PIN (4 to 8 digits)"), validators=[Optional(), Regexp(r"^[0-9]{4,8}$", message=_l("4 to 8 digits."))]
    )
    reason = reason_field()

    def required_when(self):
        return [(self.pin, self.action.data == "set" and not self.pin.data, _l("Enter the PIN to set."))]


EVENT_KIND_CHOICES = choices(
    [
        ("intrathecal_dose", _l("Intrathecal dose")),
        ("systemic_cycle", _l("Systemic cycle (day 1)")),
        ("progression", _l("Progression")),
        ("end_of_treatment", _l("End of treatment")),
    ]
)


class EventForm(Form):
    kind = SelectField(_l("Event"), choices=EVENT_KIND_CHOICES, validators=[InputRequired()])
    date = DateField(_l("Date given (actual, not planned)"), validators=[InputRequired()])
    number = IntegerField(_l("Cycle or dose number"), validators=[Optional(), NumberRange(1, 999)])
    cycle_length_days = IntegerField(_l("Cycle length (days)"), validators=[Optional(), NumberRange(1, 120)])
    drug = StringField(_l("Drug (optional)"), validators=[Optional(), Length(max=64)])


class MoveEventForm(Form):
    date = DateField(_l("Corrected date"), validators=[InputRequired()])
    cycle_length_days = IntegerField(_l("Cycle length (days)"), validators=[Optional(), NumberRange(1, 120)])
    reason = reason_field()


class DeleteEventForm(Form):
    reason = reason_field(_l("Why delete this event?"))


STATUS_CHOICES = choices(
    [
        ("died", _l("Died")),
        ("withdrawn", _l("Withdrew consent")),
        ("lost", _l("Lost to follow-up")),
        ("active", _l("Active (undo an earlier status)")),
    ]
)


class PatientStatusForm(Form):
    status = SelectField(_l("New status"), choices=STATUS_CHOICES, validators=[InputRequired()])
    date = DateField(_l("Date (of death, withdrawal or last contact)"), validators=[Optional()])
    reason = reason_field()
    # A recorded death stays recorded; a death entered in error (wrong patient, wrong date) is
    # corrected as its own audited act.
    correct_death = BooleanField(_l("This corrects a death recorded in error"), default=False)

    def required_when(self):
        missing = self.status.data != "active" and not self.date.data and not self.date.errors
        return [(self.date, missing, _l("A date is required."))]


class MissedReasonForm(Form):
    missed_reason = RadioField(
        _l("Why was the form not completed?"),
        choices=choices((code, MISSED_REASON_LABELS[code]) for code in MISSED_REASONS),
        validators=[InputRequired()],
    )
    text = TextAreaField(_l("Details (required for Other)"), validators=[Optional(), Length(max=255)])
    reason = TextAreaField(_l("Reason for changing an earlier answer"), validators=[Optional(), Length(max=255)])

    def required_when(self):
        missing = self.missed_reason.data == "other" and not (self.text.data or "").strip()
        return [(self.text, missing, _l("Please describe the reason."))]


CALL_OUTCOME_CHOICES = [
    ("will_answer", _l("Reached: will answer")),
    ("too_ill", _l("Reached: too ill to answer (records the missed reason)")),
    ("done_by_phone", _l("Form done over the phone (opens staff entry, mode interview)")),
    ("no_answer", _l("No answer")),
    ("wrong_number", _l("Wrong number")),
]


class CallOutcomeForm(Form):
    outcome = RadioField(_l("What happened?"), choices=choices(CALL_OUTCOME_CHOICES), validators=[InputRequired()])
    note = TextAreaField(_l("Note (optional)"), validators=[Optional(), Length(max=255)])


class AcknowledgeForm(Form):
    action = TextAreaField(_l("Action taken"), validators=[InputRequired(), Length(max=255)])


# ---- admin --------------------------------------------------------------------------------
ROLE_CHOICES = choices(ROLE_PAIRS)


class UserCreateForm(Form):
    username = StringField(
        _l("Username"),
        validators=[
            InputRequired(),
            Length(max=64),
            Regexp(r"^[A-Za-z0-9._-]+$", message=_l("Letters, digits, . - _ only.")),
        ],
    )
    full_name = StringField(_l("Full name"), validators=[InputRequired(), Length(max=255)])
    email = StringField(_l("E-mail"), validators=[Optional(), Length(max=255)])
    phone = StringField(
        _l("Mobile phone (for alerts by SMS)"),
        validators=[Optional(), Length(max=32), Regexp(PHONE_PATTERN, message=_l("Not a phone number."))],
    )
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, validators=[InputRequired()])
    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES, default="zh_Hans", validators=[InputRequired()])
    site_id = SelectField(_l("Site"), coerce=int, validators=[Optional()])
    password = PasswordField(
        _l("Initial password (at least 12 characters)"), validators=[InputRequired(), Length(12, 256)]
    )


class UserContactForm(Form):
    email = StringField(
        _l("E-mail"),
        validators=[
            Optional(),
            Length(max=255),
            Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("Not an e-mail address.")),
        ],
    )
    phone = StringField(
        _l("Mobile phone (for alerts by SMS)"),
        validators=[Optional(), Length(max=32), Regexp(PHONE_PATTERN, message=_l("Not a phone number."))],
    )


class UserActiveForm(Form):
    reason = reason_field()


class UserPasswordForm(Form):
    password = PasswordField(_l("New password (at least 12 characters)"), validators=[InputRequired(), Length(12, 256)])
    reason = reason_field()


class UserRoleForm(Form):
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, validators=[InputRequired()])
    reason = reason_field()


class MembershipForm(Form):
    site_id = SelectField(_l("Site"), coerce=int, validators=[InputRequired()])
    reason = TextAreaField(_l("Reason (required to remove)"), validators=[Optional(), Length(max=255)])


# ---- sites (admin) ---------------------------------------------------------------------------
PHONE_VALIDATOR = Regexp(r"^\+?[0-9][0-9 ()-]{1,30}$", message=_l("Not a phone number."))


class SiteForm(Form):
    code = StringField(
        _l("Site code"),
        validators=[
            InputRequired(),
            Length(max=16),
            Regexp(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", message=_l("Letters, digits, - and _ only.")),
        ],
    )
    name = StringField(_l("Name"), validators=[InputRequired(), Length(max=255)])
    timezone = StringField(
        _l("Time zone (IANA name, e.g. Asia/Shanghai)"), validators=[InputRequired(), Length(max=64), _valid_timezone]
    )
    default_language = SelectField(
        _l("Default language of its patients"), choices=LANGUAGE_CHOICES, validators=[InputRequired()]
    )
    contact_phone = StringField(
        _l("Study team phone (optional)"), validators=[Optional(), Length(max=32), PHONE_VALIDATOR]
    )
    emergency_phone = StringField(
        _l("Emergency number (shown with red alerts, e.g. 120)"),
        validators=[InputRequired(), Length(max=32), PHONE_VALIDATOR],
    )


class SiteEditForm(SiteForm):
    reason = reason_field()


# ---- patient record --------------------------------------------------------------------------
class PatientDetailsForm(Form):
    """Contact details, language, time zone and display preferences (one BooleanField per
    registered preference is added by :func:`details_form_class`)."""

    email = StringField(
        _l("E-mail for reminders (optional)"),
        validators=[
            Optional(),
            Length(max=255),
            Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("Not an e-mail address.")),
        ],
    )
    phone = StringField(
        _l("Mobile phone for reminders (optional)"),
        validators=[Optional(), Length(max=32), Regexp(r"^\+?[0-9 ()-]{5,}$", message=_l("Not a phone number."))],
    )
    language = SelectField(_l("Patient's language"), choices=LANGUAGE_CHOICES, validators=[InputRequired()])
    timezone = StringField(
        _l("Time zone (leave empty for the site's)"), validators=[Optional(), Length(max=64), _valid_timezone]
    )
    reason = reason_field()

    preference_keys: tuple[str, ...] = ()

    def preferences(self) -> dict[str, bool]:
        return {key: bool(self[f"pref_{key}"].data) for key in self.preference_keys}


#: Labels of the display preferences (keys of services.patient_records.DISPLAY_PREFERENCES).
PREFERENCE_LABELS: dict[str, object] = {
    "large_print": _l("Large print: one question per screen, big answer buttons"),
}


def enrol_form_class(preferences) -> type[EnrolForm]:
    """The enrolment form with one checkbox per registered display preference."""
    fields = {
        f"pref_{key}": BooleanField(PREFERENCE_LABELS.get(key, key), default=spec.default)
        for key, spec in preferences.items()
    }
    fields["preference_keys"] = tuple(preferences)
    return type("EnrolFormWithPreferences", (EnrolForm,), fields)


def details_form_class(preferences) -> type[PatientDetailsForm]:
    """The details form with one checkbox per registered display preference."""
    fields = {
        f"pref_{key}": BooleanField(PREFERENCE_LABELS.get(key, key), default=spec.default)
        for key, spec in preferences.items()
    }
    fields["preference_keys"] = tuple(preferences)
    return type("PatientDetailsFormWithPreferences", (PatientDetailsForm,), fields)


class RandomizationForm(Form):
    arm = RadioField(
        _l("Arm"),
        choices=choices([("A", _l("A: intrathecal + systemic")), ("B", _l("B: systemic alone"))]),
        validators=[InputRequired()],
    )
    randomization_date = DateField(_l("Randomization date"), validators=[InputRequired()])
    reason = reason_field()


# ---- data locks ------------------------------------------------------------------------------
LOCK_SCOPE_CHOICES = choices(
    [("trial", _l("The whole trial")), ("site", _l("One site")), ("patient", _l("One patient"))]
)


class LockForm(Form):
    scope = RadioField(_l("Lock"), choices=LOCK_SCOPE_CHOICES, default="trial", validators=[InputRequired()])
    site_id = SelectField(_l("Site (for a site lock)"), coerce=int, validators=[Optional()])
    study_id = StringField(_l("Study id (for a patient lock)"), validators=[Optional(), Length(max=32)])
    at = StringField(_l("From (UTC, e.g. 2027-01-31T18:00; empty = now)"), validators=[Optional(), Length(max=32)])
    reason = reason_field(_l("Why lock?"))

    def required_when(self):
        return [
            (self.site_id, self.scope.data == "site" and not self.site_id.data, _l("Choose the site to lock.")),
            (
                self.study_id,
                self.scope.data == "patient" and not (self.study_id.data or "").strip(),
                _l("Enter the study id of the patient to lock."),
            ),
        ]

    def validate_at(self, field) -> None:
        if (field.data or "").strip() and self.moment() is None:
            raise ValidationError(_l("Not a date and time (e.g. 2027-01-31T18:00)."))

    def moment(self):
        """The moment asked for (UTC), or None when empty or unreadable."""
        import datetime as dt

        text = (self.at.data or "").strip()
        if not text:
            return None
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return value if value.utcoffset() is not None else value.replace(tzinfo=dt.UTC)


class UnlockForm(Form):
    reason = reason_field(_l("Why release the lock?"))


# ---- audit search (admin) --------------------------------------------------------------------
class AuditSearchForm(Form):
    class Meta:
        csrf = False  # a GET search form changes nothing

    entity = StringField(
        _l("Entity (e.g. patients, treatment_event, responses)"), validators=[Optional(), Length(max=32)]
    )
    entity_id = StringField(_l("Entity id"), validators=[Optional(), Length(max=64)])
    actor = StringField(_l("Actor (username, or system:scheduler)"), validators=[Optional(), Length(max=64)])
    date_from = DateField(_l("From (UTC date)"), validators=[Optional()])
    date_to = DateField(_l("To (UTC date, inclusive)"), validators=[Optional()])

    def validate_date_to(self, field) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError(_l("The date range ends before it starts."))


# ---- second factor ---------------------------------------------------------------------------
class TotpCodeForm(Form):
    code = StringField(
        _l("Code from the authenticator app (or a recovery code)"),
        validators=[InputRequired(), Length(max=32)],
    )


class TotpSetupForm(Form):
    code = StringField(
        _l("6-digit code shown by the app"),
        validators=[InputRequired(), Regexp(r"^\s*[0-9]{6}\s*$", message=_l("Enter the 6 digits."))],
    )


class TotpOffForm(Form):
    password = PasswordField(_l("Your password"), validators=[InputRequired(), Length(max=256)])


class ResetTotpForm(Form):
    reason = reason_field()
