"""Treatment events: record (new data), move and delete (changes: a reason is required)."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from qol_app import policy
from qol_app.db import db
from qol_app.locking import lock_target
from qol_app.models import TreatmentEvent
from qol_app.nurse import bp, clinical
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import DeleteEventForm, EventForm, MoveEventForm
from qol_app.nurse.patients import flash_errors, render_patient
from qol_app.security import staff_required
from qol_app.web_messages import message

EDIT = policy.roles_for("patient.edit")


@bp.post("/patients/<int:patient_id>/events")
@staff_required(*EDIT)
@lock_target("patient")
def record_event(patient_id: int):
    """Record an administered treatment on its actual date; its timepoints appear at once."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    form = EventForm()
    if form.validate_on_submit():
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
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
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Event recorded; the schedule was updated."), "ok")
            return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="events"))
    else:
        flash_errors(form)
    # Shown again with what was typed (event type included), so a retry cannot record another event.
    return render_patient(p, 422, event_form=form)


def _event(patient_id: int, event_id: int):
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    event = policy.get_owned_or_404(db.session, TreatmentEvent, event_id, p)
    return p, event


@bp.route("/patients/<int:patient_id>/events/<int:event_id>/move", methods=["GET", "POST"])
@staff_required(*EDIT)
@lock_target("patient")
def move_event(patient_id: int, event_id: int):
    """Correct an event's date or cycle length (e.g. a cycle delayed by low counts)."""
    p, event = _event(patient_id, event_id)
    form = MoveEventForm(obj=event)
    if form.validate_on_submit():
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
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
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Event changed; the schedule was updated."), "ok")
            return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="events"))
    status = 422 if request.method == "POST" else 200
    return render_template(
        "nurse/event_edit.html", patient=p, event=event, form=form, delete_form=DeleteEventForm(formdata=None)
    ), status


@bp.post("/patients/<int:patient_id>/events/<int:event_id>/delete")
@staff_required(*EDIT)
@lock_target("patient")
def delete_event(patient_id: int, event_id: int):
    """Delete an event entered by mistake (soft: kept with the reason; its timepoints are cancelled)."""
    p, event = _event(patient_id, event_id)
    form = DeleteEventForm()
    if form.validate_on_submit():
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                clinical.delete_event(db.session, current_actor(), event, reason=form.reason.data.strip(), now=now())
        except ValueError as exc:
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Event deleted; its forms were cancelled."), "ok")
            return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="events"))
    else:
        flash_errors(form)
    return render_template(
        "nurse/event_edit.html", patient=p, event=event, form=MoveEventForm(formdata=None, obj=event), delete_form=form
    ), 422
