"""The one access policy for the web layer: the rules of :mod:`qol_app.access`, and the helpers that
turn them into 404/403.

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
from sqlalchemy.orm import Session

from qol_app.access import (  # the rules, re-exported: views write policy.can, policy.roles_for
    ALL_SITES_ROLES,
    CLINICAL_ROLES,
    PERMISSIONS,
    READERS,
    can,
    patient_clause,
    roles_for,
    scoped_patients,
    sees_all_sites,
    site_clause,
    visible_sites,
)
from qol_app.models import Patient, StaffUser

__all__ = [
    "ALL_SITES_ROLES",
    "CLINICAL_ROLES",
    "PERMISSIONS",
    "READERS",
    "can",
    "patient_clause",
    "roles_for",
    "scoped_patients",
    "sees_all_sites",
    "site_clause",
    "visible_sites",
    "get_owned_or_404",
    "get_patient_or_404",
]


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
