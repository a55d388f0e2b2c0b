"""Acknowledging a symptom alert: who, when and what was done (helper service does the write)."""

from __future__ import annotations

from flask import flash, g, redirect, request, url_for
from flask_babel import gettext as _

from qol_app import policy
from qol_app.db import db
from qol_app.locking import lock_target
from qol_app.models import Alert
from qol_app.nurse import bp
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import AcknowledgeForm
from qol_app.security import staff_required
from qol_app.services import alerts as alert_service


@bp.post("/patients/<int:patient_id>/alerts/<int:alert_id>/acknowledge")
@staff_required(*policy.roles_for("alert.acknowledge"))
@lock_target("patient")
def acknowledge_alert(patient_id: int, alert_id: int):
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "alert.acknowledge")
    alert = policy.get_owned_or_404(db.session, Alert, alert_id, p)
    form = AcknowledgeForm()
    action = (form.action.data or "").strip() if form.validate_on_submit() else ""
    if not action:
        flash(_("Describe the action taken to acknowledge the alert."), "error")
    elif alert_service.acknowledge(db.session, current_actor(), alert, g.staff, action, now()):
        db.session.commit()
        flash(_("Alert acknowledged."), "ok")
    else:
        flash(_("This alert was already acknowledged."), "error")
    if request.args.get("back") == "dashboard":
        return redirect(url_for("nurse.dashboard"))
    return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="alerts"))
