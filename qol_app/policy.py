"""The one access policy: which role may do what, and on which sites' data.

Deny by default. A permission names the roles that hold it; data is further limited to the
user's sites (memberships), except for admins, who see every site but do not change clinical
data (arm and randomization corrections excepted), and data managers, who work trial-wide on
pseudonymous data. Views show the roles with ``@staff_required(*roles_for(...))`` and load objects only
through :func:`get_patient_or_404`, so an object of another site is indistinguishable from
one that does not exist (404, not 403: no probing of study ids).
"""

from __future__ import annotations

from typing import Any

from flask import abort
from sqlalchemy import ColumnElement, Select, false, select, true
from sqlalchemy.orm import Session

from qol_app.models import Alert, Patient, Response, Site, StaffUser, Timepoint, TreatmentEvent

CLINICAL_ROLES = ("nurse", "investigator")
#: Monitors (CRAs) read their sites for source data verification and change nothing.
#: Data managers work trial-wide on data quality (missed reasons, corrections, locks) and never
#: see contact details: for them the app is pseudonymous.
READERS = (*CLINICAL_ROLES, "admin", "monitor", "data_manager")

# action -> roles that hold it. Anything not listed is denied.
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "dashboard.view": READERS,
    "patient.view": READERS,
    # Contact details (phone, e-mail): everyone who sees patients except data managers.
    "patient.identifiable": (*CLINICAL_ROLES, "admin", "monitor"),
    "patient.enroll": CLINICAL_ROLES,
    # Events, status, link, PIN, contact details and preferences, staff-entered forms.
    "patient.edit": CLINICAL_ROLES,
    # Arm and randomization date corrections (re-plan the schedule).
    "patient.randomization": ("investigator", "admin"),
    "timepoint.missed_reason": (*CLINICAL_ROLES, "data_manager"),
    "response.correct": (*CLINICAL_ROLES, "data_manager"),
    "alert.acknowledge": CLINICAL_ROLES,
    "history.view": ("investigator", "monitor", "admin", "data_manager"),
    "audit.search": ("admin",),
    "lock.manage": ("admin", "data_manager"),
    "site.manage": ("admin",),
    "staff.manage": ("admin",),
    "export.run": ("statistician", "admin"),
}
# Roles that see every site without memberships.
ALL_SITES_ROLES = ("admin", "data_manager")


def roles_for(action: str) -> tuple[str, ...]:
    """Roles holding ``action`` (for the view decorators); unknown actions are a bug."""
    return PERMISSIONS[action]


def sees_all_sites(user: StaffUser) -> bool:
    return user.role in ALL_SITES_ROLES


def site_clause(user: StaffUser | None, column: Any) -> ColumnElement[bool]:
    """SQL condition limiting ``column`` (a site id column) to the user's sites."""
    if user is None or not user.active:
        return false()
    if sees_all_sites(user):
        return true()
    ids = user.site_ids
    return column.in_(sorted(ids)) if ids else false()


def patient_clause(user: StaffUser | None) -> ColumnElement[bool]:
    """SQL condition on ``Patient`` for the patients this user may see at all."""
    if user is None or user.role not in PERMISSIONS["patient.view"]:
        return false()
    return site_clause(user, Patient.site_id)


def scoped_patients(user: StaffUser | None) -> Select[tuple[Patient]]:
    """``select(Patient)`` already limited to what the user may see."""
    return select(Patient).where(patient_clause(user))


def visible_sites(session: Session, user: StaffUser) -> list[Site]:
    """Sites the user works at (all for admins), ordered by code."""
    return list(session.scalars(select(Site).where(site_clause(user, Site.id)).order_by(Site.code)))


def _site_of(obj: Any) -> int | None:
    if obj is None:
        return None
    if isinstance(obj, int):
        return obj
    if isinstance(obj, Site):
        return obj.id
    if isinstance(obj, Patient):
        return obj.site_id
    if isinstance(obj, (TreatmentEvent, Timepoint, Alert)):
        return obj.patient.site_id
    if isinstance(obj, Response):
        return obj.timepoint.patient.site_id
    raise TypeError(f"no site rule for {type(obj).__name__}")


def can(user: StaffUser | None, action: str, obj: Any = None) -> bool:
    """May ``user`` do ``action`` (on ``obj``: a site id, Site, Patient or patient-owned row)?"""
    if user is None or not user.active or user.role not in PERMISSIONS.get(action, ()):
        return False
    site_id = _site_of(obj)
    if site_id is None:
        return True
    return sees_all_sites(user) or site_id in user.site_ids


def get_patient_or_404(session: Session, user: StaffUser, patient_id: int, action: str = "patient.view") -> Patient:
    """The patient if ``user`` may do ``action`` on it; 404 when unseen, 403 when seen but not allowed."""
    patient = session.get(Patient, patient_id)
    if patient is None or not can(user, "patient.view", patient):
        abort(404)
    if action != "patient.view" and not can(user, action, patient):
        abort(403)
    return patient


def get_owned_or_404(session: Session, model: type, obj_id: int, patient: Patient) -> Any:
    """A row (event, timepoint, alert) that must belong to ``patient``; 404 otherwise."""
    obj = session.get(model, obj_id)
    if obj is None or obj.patient_id != patient.id:
        abort(404)
    return obj
