"""The one data-lock check for the web: a guard before every write request.

Every view that accepts a write method declares what it writes, with :func:`lock_target`
(patient data, found from the URL, the form or the signed-in patient) or :func:`lock_exempt`
(nothing that a data lock covers: signing in, accounts, the lock pages themselves). The guard
resolves the entity, asks :func:`qol_app.services.locks.lock_for`, and refuses with a clear page
(423) when a lock is in force: staff see what is locked, since when and why; a patient sees that
the form is closed. A write view that declares nothing is a bug and answers 500 (and
``tests/web/test_locks.py`` lists every write route), so a new route cannot slip past the lock.

The guard runs after the sign-in and CSRF checks, and only for people who may see the entity:
anyone else gets the view's own answer (sign-in redirect, 404), so a lock reveals nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, g, render_template, request

from qol_app import auth, policy
from qol_app.db import db
from qol_app.models import DataLock, Patient
from qol_app.services import locks

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: What a view may declare it writes.
TARGETS = ("patient", "site_form", "signed_in_patient")
_UNDECLARED = object()


def lock_target(target: str, *, reads: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare that the view writes patient data found through ``target``:

    * ``patient``: the ``patient_id`` in the URL (staff pages);
    * ``site_form``: the ``site_id`` field of the posted form (enrolment);
    * ``signed_in_patient``: the patient signed in (patient pages).

    ``reads=True`` closes the view for reading too (a patient's form pages show "closed").
    """
    if target not in TARGETS:
        raise ValueError(f"unknown lock target {target!r}")

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        view.lock_target = target  # type: ignore[attr-defined]
        view.lock_reads = reads  # type: ignore[attr-defined]
        return view

    return decorate


def lock_exempt(view: Callable[..., Any]) -> Callable[..., Any]:
    """Declare that the view's writes touch nothing a data lock covers."""
    view.lock_target = None  # type: ignore[attr-defined]
    view.lock_reads = False  # type: ignore[attr-defined]
    return view


def declared_target(view: Callable[..., Any]) -> Any:
    """The view's declaration: a target, None (exempt) or ``_UNDECLARED``."""
    return getattr(view, "lock_target", _UNDECLARED)


def is_declared(view: Callable[..., Any]) -> bool:
    return declared_target(view) is not _UNDECLARED


def _staff_may_see(patient: Patient | None) -> bool:
    return patient is not None and policy.can(g.get("staff"), "patient.view", patient)


def _lock_of(target: str) -> DataLock | None:
    now = auth.now()
    if target == "patient":
        patient_id = (request.view_args or {}).get("patient_id")
        patient = db.session.get(Patient, patient_id) if isinstance(patient_id, int) else None
        return locks.lock_for(db.session, now, patient=patient) if _staff_may_see(patient) else None
    if target == "site_form":
        site_id = request.form.get("site_id", type=int)
        staff = g.get("staff")
        if site_id is None or not policy.can(staff, "patient.enroll", site_id):
            return None
        return locks.lock_for(db.session, now, site_id=site_id)
    patient = g.get("patient")
    return locks.lock_for(db.session, now, patient=patient) if patient is not None else None


def signed_in_patient_lock() -> DataLock | None:
    """The lock in force on the signed-in patient (for pages that show "closed" instead of forms)."""
    patient = g.get("patient")
    return locks.lock_for(db.session, auth.now(), patient=patient) if patient is not None else None


def _refuse(lock: DataLock, target: str) -> Any:
    if target == "signed_in_patient":
        page = render_template(
            "patient/closed.html", locked=True, safety=g.patient.site.safety_numbers(), signed_in=True
        )
        return page, 423
    patient_id = (request.view_args or {}).get("patient_id")
    return render_template("nurse/locked.html", lock=lock, patient_id=patient_id), 423


def _guard() -> Any:
    if request.endpoint is None or request.endpoint == "static":
        return None
    view = current_app.view_functions.get(request.endpoint)
    if view is None:
        return None
    target = declared_target(view)
    writing = request.method in WRITE_METHODS
    if target is _UNDECLARED:
        if writing:
            current_app.logger.error("write route %s declares no data-lock target; refused", request.endpoint)
            return render_template("errors/error.html", code=500), 500
        return None
    if target is None or not (writing or getattr(view, "lock_reads", False)):
        return None
    lock = _lock_of(target)
    return _refuse(lock, target) if lock is not None else None


def init_app(app: Flask) -> None:
    """Register the guard; after ``security`` (who is signed in) and CSRF, which register first."""
    app.before_request(_guard)
