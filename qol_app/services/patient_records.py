"""Corrections of a patient's record after enrolment, each audited with a reason.

* :func:`update_details`: contact details (reminders go there), language, own time zone and
  display preferences, for the site's nurses and investigators. A new time zone re-plans the
  patient's unstarted timepoints (their windows are local days).
* :func:`correct_randomization`: arm and randomization date, for investigators and admins. The
  schedule is re-planned through the one reconcile: answered or started forms are never lost
  or moved; unstarted ones follow (or are cancelled when the new arm does not have them).

Status changes (died, withdrawn, lost) go through ``treatment_events.set_patient_status``, which
applies their consequences (later forms not expected, reminders skipped). Who may call what is
the web layer's business (``qol_app.policy``); these functions only check the data.
Services flush; the caller commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import Patient, TreatmentEvent
from qol_app.models.trial import ARMS
from qol_app.scheduling import Schedule, local_date_of
from qol_app.scheduling.timewindows import zone
from qol_app.services import audit
from qol_app.services.audit import Actor
from qol_app.services.sites import valid_timezone
from qol_app.services.timepoints import ReconcileResult, reconcile_patient

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_RE = re.compile(r"^\+?[0-9 ()-]{5,32}$")
DETAIL_FIELDS = ("email", "phone", "language", "timezone", "display_preferences")


@dataclasses.dataclass(frozen=True)
class DisplayPreference:
    """One patient display preference: a stable key, its type and default (the form shows it)."""

    key: str
    kind: str  # "bool" for now
    default: Any


#: The preferences a patient's pages honour, by key; the edit form and :func:`update_details`
#: take whatever is registered here.
#: ``large_print``: one item per screen, text of at least 24 px, full-width answer buttons at
#: least 64 px tall, enhanced contrast (WCAG 1.4.6).
DISPLAY_PREFERENCES: dict[str, DisplayPreference] = {
    "large_print": DisplayPreference("large_print", "bool", False),
}


def display_preference(patient: Patient, key: str) -> Any:
    """The patient's value of a registered preference (its default when not set)."""
    return (patient.display_preferences or {}).get(key, DISPLAY_PREFERENCES[key].default)


def set_display_preference(
    session: Session, actor: Actor, patient: Patient, key: str, value: Any, *, now: dt.datetime
) -> bool:
    """Set one display preference (the patient's own one-tap choice); audited, no reason asked.

    Returns whether it changed. ServiceError for an unregistered key.
    """
    current = dict(patient.display_preferences or {})
    cleaned = clean_preferences({**current, key: value}) or None
    if cleaned == (current or None):
        return False
    patient.display_preferences = cleaned
    session.flush()
    audit.record(
        session,
        actor,
        "display_preference",
        patient,
        patient_id=patient.id,
        site_id=patient.site_id,
        old={key: display_preference_of(current, key)},
        new={key: display_preference_of(cleaned, key)},
        now=now,
    )
    return True


def display_preference_of(values: Mapping[str, Any] | None, key: str) -> Any:
    return (values or {}).get(key, DISPLAY_PREFERENCES[key].default)


def _require_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(N_("A reason is required."))
    return reason[:255]


def clean_preferences(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The registered preferences that differ from their default (None when none); ServiceError
    for an unknown key."""
    if not values:
        return None
    out: dict[str, Any] = {}
    for key, value in values.items():
        spec = DISPLAY_PREFERENCES.get(key)
        if spec is None:
            raise ServiceError(N_("Unknown display preference %(key)s."), key=key)
        if spec.kind == "bool":
            value = bool(value)
        if value != spec.default:
            out[key] = value
    return out or None


def update_details(
    session: Session,
    actor: Actor,
    patient: Patient,
    changes: Mapping[str, Any],
    *,
    reason: str,
    languages: Sequence[str],
    now: dt.datetime,
    schedule: Schedule | None = None,
) -> dict[str, Any]:
    """Change any of DETAIL_FIELDS; returns the fields that changed (empty when none did).

    Empty e-mail, phone or time zone means none (the site's zone). ServiceError for a bad value.
    """
    reason = _require_reason(reason)
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in DETAIL_FIELDS:
            raise ValueError(f"{name!r} is not a patient detail")
        values[name] = value.strip() or None if isinstance(value, str) else value
    if values.get("email") is not None and not EMAIL_RE.match(values["email"]):
        raise ServiceError(N_("Not an e-mail address: %(value)s"), value=values["email"])
    if values.get("phone") is not None and not PHONE_RE.match(values["phone"]):
        raise ServiceError(N_("Not a phone number: %(value)s"), value=values["phone"])
    if "language" in values and values["language"] not in languages:
        raise ServiceError(N_("The language must be one of %(languages)s."), languages=", ".join(languages))
    if values.get("timezone") is not None and not valid_timezone(values["timezone"]):
        raise ServiceError(
            N_("Unknown time zone %(timezone)s (use an IANA name such as Asia/Shanghai)."), timezone=values["timezone"]
        )
    if "display_preferences" in values:
        values["display_preferences"] = clean_preferences(values["display_preferences"])
    old, new = audit.changes(patient, list(values), values)
    if not new:
        return {}
    for name, value in new.items():
        setattr(patient, name, value)
    session.flush()
    # Contact details are kept out of the trail's values (it is read by pseudonymous roles):
    # the trail says that they changed, not what they are.
    shown_old = {k: ("(set)" if v else None) if k in ("email", "phone") else v for k, v in old.items()}
    shown_new = {k: ("(set)" if v else None) if k in ("email", "phone") else v for k, v in new.items()}
    audit.record(
        session,
        actor,
        "patient_details",
        patient,
        patient_id=patient.id,
        site_id=patient.site_id,
        old=shown_old,
        new=shown_new,
        reason=reason,
        now=now,
    )
    if "timezone" in new:
        reconcile_patient(session, actor, patient, now, reason=reason, schedule=schedule)
    return new


def correct_randomization(
    session: Session,
    actor: Actor,
    patient: Patient,
    *,
    reason: str,
    now: dt.datetime,
    arm: str | None = None,
    randomization_date: dt.date | None = None,
    schedule: Schedule | None = None,
) -> ReconcileResult:
    """Correct the arm and/or randomization date (reason required) and re-plan the timepoints.

    The date must not be in the future (patient's local calendar) nor after a recorded event or
    status date. Answered forms stay where they are: reconcile never touches started rows.
    """
    reason = _require_reason(reason)
    values: dict[str, Any] = {}
    if arm is not None:
        if arm not in ARMS:
            raise ServiceError(N_("The arm must be A or B."))
        values["arm"] = arm
    if randomization_date is not None:
        if randomization_date > local_date_of(now, zone(patient.tz)):
            raise ServiceError(N_("The randomization date %(date)s is in the future."), date=randomization_date)
        first_event = session.scalar(
            select(func.min(TreatmentEvent.date)).where(
                TreatmentEvent.patient_id == patient.id, TreatmentEvent.deleted_at.is_(None)
            )
        )
        if first_event is not None and randomization_date > first_event:
            raise ServiceError(
                N_("The randomization date %(date)s is after the first recorded event (%(event)s)."),
                date=randomization_date,
                event=first_event,
            )
        if patient.status_date is not None and randomization_date > patient.status_date:
            raise ServiceError(
                N_("The randomization date %(date)s is after the status date (%(status_date)s)."),
                date=randomization_date,
                status_date=patient.status_date,
            )
        values["randomization_date"] = randomization_date
    old, new = audit.changes(patient, list(values), values)
    if not new:
        return ReconcileResult()
    for name, value in new.items():
        setattr(patient, name, value)
    session.flush()
    audit.record(
        session,
        actor,
        "correct_randomization",
        patient,
        patient_id=patient.id,
        site_id=patient.site_id,
        old=old,
        new=new,
        reason=reason,
        now=now,
    )
    return reconcile_patient(session, actor, patient, now, reason=reason, schedule=schedule)
