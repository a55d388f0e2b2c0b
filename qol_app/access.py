"""The access rules: which role may do what, and on which sites' data (no Flask here).

Deny by default. A permission names the roles that hold it; data is further limited to the
user's sites (memberships), except for admins, who see every site but do not change clinical
data (arm and randomization corrections excepted), and data managers, who work trial-wide on
pseudonymous data. Services check these rules themselves (defence in depth); the web layer uses
them through :mod:`qol_app.policy`, which adds the 404/403 helpers.
"""

from __future__ import annotations

from typing import Any

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


def scoped_patients(user: StaffUser | None) -> Select[Patient]:
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
