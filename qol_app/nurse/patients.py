"""Patients: list, enrol, the patient page, personal link and PIN, status, missed-form reasons."""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from qol_app import policy
from qol_app.db import db
from qol_app.i18n import select_locale
from qol_app.inputs import MAX_DB_INT, int_arg, text_arg
from qol_app.models import Patient, Site, Timepoint
from qol_app.nurse import bp, cards, clinical, patient_data
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import (
    AcknowledgeForm,
    EnrolForm,
    EventForm,
    MissedReasonForm,
    PatientStatusForm,
    PinForm,
    RotateLinkForm,
    choices,
)
from qol_app.security import staff_required
from qol_app.services import compliance, enrolment

PAGE_SIZE = 100
VIEW = policy.roles_for("patient.view")
EDIT = policy.roles_for("patient.edit")


@bp.get("/patients")
@staff_required(*VIEW)
def patients():
    """The patients the user may see, searchable by study id, 100 a page."""
    q = text_arg("q", max_length=64)
    page = int_arg("page", 1, maximum=MAX_DB_INT // PAGE_SIZE)
    stmt = policy.scoped_patients(g.staff)
    if q:
        stmt = stmt.where(Patient.study_id.ilike(f"%{q.replace('%', '').replace('_', '')}%"))
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.session.scalars(stmt.order_by(Patient.study_id).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    sites = {s.id: s for s in policy.visible_sites(db.session, g.staff)}
    return render_template(
        "nurse/patients.html", patients=rows, q=q, page=page, total=total, page_size=PAGE_SIZE, sites=sites
    )


@bp.route("/patients/new", methods=["GET", "POST"])
@staff_required(*policy.roles_for("patient.enroll"))
def enrol():
    """Enrol a patient, then show the personal link once as a QR card (never stored in clear)."""
    sites = [s for s in policy.visible_sites(db.session, g.staff) if policy.can(g.staff, "patient.enroll", s)]
    form = EnrolForm()
    form.site_id.choices = choices((s.id, f"{s.code} · {s.name}") for s in sites)
    if request.method == "GET" and sites:
        form.language.data = sites[0].default_language
    if form.validate_on_submit():
        site = db.session.get(Site, form.site_id.data)
        if site is None or not policy.can(g.staff, "patient.enroll", site):
            abort(404)
        try:
            enrolled = enrolment.enroll_patient(
                db.session,
                current_actor(),
                study_id=form.study_id.data.strip(),
                site=site,
                arm=form.arm.data,
                randomization_date=form.randomization_date.data,
                consent_date=form.consent_date.data,
                language=form.language.data,
                timezone=(form.timezone.data or "").strip() or None,
                email=form.email.data or None,
                phone=form.phone.data or None,
                with_pin=form.with_pin.data,
                now=now(),
            )
        except ValueError as exc:
            form.study_id.errors = (
                [*form.study_id.errors, _("This study id is already enrolled.")]
                if "already" in str(exc)
                else [str(exc)]
            )
        else:
            clinical.plan_timepoints(db.session, current_actor(), enrolled.patient, now())
            db.session.commit()
            return cards.render_issued(enrolled.patient, enrolled.token, enrolled.pin, new=True)
    return render_template("nurse/enrol.html", form=form, sites=sites)


@bp.get("/patients/<int:patient_id>")
@staff_required(*VIEW)
def patient(patient_id: int):
    """Timeline, score charts, diary heat map, alerts and the forms to act on."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id)
    data = patient_data.load(db.session, p, now(), select_locale())
    return render_template(
        "nurse/patient.html",
        patient=p,
        data=data,
        event_form=EventForm(),
        status_form=PatientStatusForm(),
        rotate_form=RotateLinkForm(),
        pin_form=PinForm(),
        ack_form=AcknowledgeForm(),
    )


@bp.post("/patients/<int:patient_id>/link")
@staff_required(*EDIT)
def rotate_link(patient_id: int):
    """A new personal link (the old one stops working): how a nurse re-issues a lost card."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    form = RotateLinkForm()
    if not form.validate_on_submit():
        flash(_("A reason is required to issue a new link."), "error")
        return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="access"))
    at = now()
    token = enrolment.rotate_link(db.session, current_actor(), p, reason=form.reason.data.strip(), now=at)
    pin = None
    if form.new_pin.data:
        pin = enrolment.new_pin()
        enrolment.set_pin(db.session, current_actor(), p, pin, reason=form.reason.data.strip(), now=at)
    db.session.commit()
    return cards.render_issued(p, token, pin, new=False)


@bp.post("/patients/<int:patient_id>/pin")
@staff_required(*EDIT)
def set_pin(patient_id: int):
    """Set, generate or remove the PIN; a new PIN is shown once."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    form = PinForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="access"))
    pin = {"generate": enrolment.new_pin(), "set": form.pin.data, "remove": None}[form.action.data]
    try:
        enrolment.set_pin(db.session, current_actor(), p, pin, reason=form.reason.data.strip(), now=now())
    except ValueError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="access"))
    db.session.commit()
    if pin is None:
        flash(_("The PIN was removed: the link alone now opens the forms."), "ok")
        return redirect(url_for("nurse.patient", patient_id=p.id))
    return render_template("nurse/pin_issued.html", patient=p, pin=pin)


@bp.post("/patients/<int:patient_id>/status")
@staff_required(*EDIT)
def set_status(patient_id: int):
    """Death, withdrawal, loss to follow-up (later forms become not expected), or back to active."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    form = PatientStatusForm()
    if form.validate_on_submit():
        try:
            clinical.set_status(
                db.session, current_actor(), p, form.status.data, form.date.data, form.reason.data.strip(), now()
            )
        except ValueError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(_("Status saved; the schedule was updated."), "ok")
    else:
        _flash_errors(form)
    return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="status"))


@bp.route("/patients/<int:patient_id>/timepoints/<int:timepoint_id>/reason", methods=["GET", "POST"])
@staff_required(*EDIT)
def missed_reason(patient_id: int, timepoint_id: int):
    """Why a form was missed (CLINICAL.md §3); changing an earlier reason needs a reason too."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    tp = policy.get_owned_or_404(db.session, Timepoint, timepoint_id, p)
    form = MissedReasonForm(missed_reason=tp.missed_reason, text=tp.missed_reason_text)
    if form.validate_on_submit():
        try:
            compliance.set_missed_reason(
                db.session,
                current_actor(),
                g.staff,
                tp,
                form.missed_reason.data,
                form.text.data,
                change_reason=form.reason.data,
                now=now(),
            )
        except ValueError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(_("Reason saved."), "ok")
            if request.args.get("back") == "dashboard":
                return redirect(url_for("nurse.dashboard", _anchor="missing"))
            return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="timeline"))
    return render_template("nurse/missed_reason.html", patient=p, tp=tp, form=form)


def _flash_errors(form) -> None:
    for name, errors in form.errors.items():
        for error in errors:
            flash(f"{form[name].label.text}: {error}", "error")
