"""Treatment events: record (new data), move and delete (changes: a reason is required)."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, url_for
from flask_babel import gettext as _

from qol_app import policy
from qol_app.db import db
from qol_app.models import TreatmentEvent
from qol_app.nurse import bp, clinical
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import DeleteEventForm, EventForm, MoveEventForm
from qol_app.security import staff_required

EDIT = policy.roles_for("patient.edit")


def _flash_errors(form) -> None:
    for name, errors in form.errors.items():
        for error in errors:
            flash(f"{form[name].label.text}: {error}", "error")


@bp.post("/patients/<int:patient_id>/events")
@staff_required(*EDIT)
def record_event(patient_id: int):
    """Record an administered treatment on its actual date; its timepoints appear at once."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    form = EventForm()
    if form.validate_on_submit():
        try:
            clinical.record_event(
                db.session,
                current_actor(),
                p,
                kind=form.kind.data,
                date=form.date.data,
                number=form.number.data,
                cycle_length_days=form.cycle_length_days.data,
                drug=(form.drug.data or "").strip() or None,
                now=now(),
            )
        except ValueError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(_("Event recorded; the schedule was updated."), "ok")
    else:
        _flash_errors(form)
    return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="events"))


def _event(patient_id: int, event_id: int):
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    event = policy.get_owned_or_404(db.session, TreatmentEvent, event_id, p)
    return p, event


@bp.route("/patients/<int:patient_id>/events/<int:event_id>/move", methods=["GET", "POST"])
@staff_required(*EDIT)
def move_event(patient_id: int, event_id: int):
    """Correct an event's date or cycle length (e.g. a cycle delayed by low counts)."""
    p, event = _event(patient_id, event_id)
    form = MoveEventForm(obj=event)
    if form.validate_on_submit():
        try:
            clinical.move_event(
                db.session,
                current_actor(),
                event,
                date=form.date.data,
                cycle_length_days=form.cycle_length_days.data,
                reason=form.reason.data.strip(),
                now=now(),
            )
        except ValueError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(_("Event changed; the schedule was updated."), "ok")
            return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="events"))
    return render_template("nurse/event_edit.html", patient=p, event=event, form=form, delete_form=DeleteEventForm())


@bp.post("/patients/<int:patient_id>/events/<int:event_id>/delete")
@staff_required(*EDIT)
def delete_event(patient_id: int, event_id: int):
    """Delete an event entered by mistake (soft: kept with the reason; its timepoints are cancelled)."""
    p, event = _event(patient_id, event_id)
    form = DeleteEventForm()
    if form.validate_on_submit():
        try:
            clinical.delete_event(db.session, current_actor(), event, reason=form.reason.data.strip(), now=now())
        except ValueError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(_("Event deleted; its forms were cancelled."), "ok")
            return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="events"))
    else:
        _flash_errors(form)
    return redirect(url_for("nurse.move_event", patient_id=p.id, event_id=event.id))
