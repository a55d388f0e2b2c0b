"""Call tasks: the nurse opens one from the work list, calls, and records what happened."""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from qol_app import policy
from qol_app.db import db
from qol_app.locking import lock_target
from qol_app.models import OutboxMessage, Response, StaffUser, Timepoint
from qol_app.nurse import bp
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import CallOutcomeForm
from qol_app.security import staff_required
from qol_app.services import notifications
from qol_app.services.compliance import current_status

EDIT = policy.roles_for("patient.edit")


def _task_or_404(patient, task_id: int) -> OutboxMessage:
    task = db.session.get(OutboxMessage, task_id)
    if task is None or task.kind != "call_task" or task.patient_id != patient.id:
        abort(404)
    return task


@bp.route("/patients/<int:patient_id>/calls/<int:task_id>", methods=["GET", "POST"])
@staff_required(*EDIT)
@lock_target("patient")
def call_task(patient_id: int, task_id: int):
    """The patient's phone (a tel: link), the form to ask about, and the outcome to record."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    task = _task_or_404(p, task_id)
    tp = db.session.get(Timepoint, task.timepoint_id) if task.timepoint_id else None
    form = CallOutcomeForm()
    if task.status == "open" and form.validate_on_submit():
        try:
            notifications.record_call_outcome(
                db.session,
                current_actor(),
                task,
                form.outcome.data,
                staff_id=g.staff.id,
                note=form.note.data,
                now=now(),
            )
        except notifications.CallTaskError:
            db.session.rollback()
            flash(_("Another nurse has already recorded this call."), "error")
            return redirect(url_for("nurse.call_task", patient_id=p.id, task_id=task_id))
        db.session.commit()
        flash(_("Call recorded."), "ok")
        if form.outcome.data == "done_by_phone" and tp is not None:
            target = _entry_target(tp)
            if target is not None:
                return redirect(target)
        return redirect(url_for("nurse.dashboard", _anchor="worklist"))
    at = now()
    return render_template(
        "nurse/call_task.html",
        patient=p,
        task=task,
        tp=tp,
        tp_status=current_status(tp, at) if tp is not None else None,
        window_closed=tp is not None and tp.closes_at <= at,
        form=form,
        outcome_by=db.session.get(StaffUser, task.outcome_by) if task.outcome_by else None,
    )


def _entry_target(tp: Timepoint) -> str | None:
    """Staff entry (mode interview) for the first form of the timepoint not yet submitted."""
    done = set(
        db.session.scalars(
            select(Response.instrument_id).where(Response.timepoint_id == tp.id, Response.status == "submitted")
        )
    )
    for instrument_id in tp.instruments:
        if instrument_id not in done:
            return url_for(
                "nurse.enter_form",
                patient_id=tp.patient_id,
                timepoint_id=tp.id,
                instrument_id=instrument_id,
                mode="interview",
            )
    return None
