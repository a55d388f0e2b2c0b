"""Patients: list, enrol, the patient page, personal link and PIN, status, missed-form reasons."""

from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from qol_app import policy
from qol_app.db import db
from qol_app.i18n import select_locale
from qol_app.inputs import MAX_DB_INT, int_arg, text_arg
from qol_app.locking import lock_target
from qol_app.models import Patient, Site, Timepoint
from qol_app.nurse import bp, cards, clinical, patient_data
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import (
    AcknowledgeForm,
    EventForm,
    MissedReasonForm,
    PatientStatusForm,
    PinForm,
    RandomizationForm,
    RotateLinkForm,
    choices,
    details_form_class,
    enrol_form_class,
)
from qol_app.security import staff_required
from qol_app.services import compliance, enrolment, locks, notifications, patient_records
from qol_app.web_messages import message

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
@lock_target("site_form")
def enrol():
    """Enrol a patient, then show the personal link once as a QR card (never stored in clear)."""
    sites = [s for s in policy.visible_sites(db.session, g.staff) if policy.can(g.staff, "patient.enroll", s)]
    form = enrol_form_class(patient_records.DISPLAY_PREFERENCES)()
    form.site_id.choices = choices((s.id, f"{s.code} · {s.name}") for s in sites)
    if request.method == "GET" and sites:
        form.language.data = sites[0].default_language
    if form.validate_on_submit():
        site = db.session.get(Site, form.site_id.data)
        if site is None or not policy.can(g.staff, "patient.enroll", site):
            abort(404)
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
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
                    display_preferences=form.preferences(),
                    now=now(),
                )
                clinical.plan_timepoints(db.session, current_actor(), enrolled.patient, now())
        except ValueError as exc:
            form.study_id.errors = [*form.study_id.errors, message(exc)]
        else:
            db.session.commit()
            return cards.render_issued(enrolled.patient, enrolled.token, enrolled.pin, new=True)
    return render_template("nurse/enrol.html", form=form, sites=sites), 400 if form.errors else 200


def render_patient(p: Patient, status: int = 200, **forms):
    """The patient page; a rejected form is passed back in ``forms`` with what was typed and its errors."""
    data = patient_data.load(db.session, p, now(), select_locale())
    defaults = {
        "event_form": EventForm,
        "status_form": PatientStatusForm,
        "rotate_form": RotateLinkForm,
        "pin_form": PinForm,
        "ack_form": AcknowledgeForm,
    }
    for name, form_class in defaults.items():
        forms.setdefault(name, form_class(formdata=None))
    return (
        render_template(
            "nurse/patient.html",
            patient=p,
            data=data,
            lock=locks.lock_for(db.session, now(), patient=p),
            messages=notifications.patient_messages(db.session, p.id),
            calls=notifications.patient_call_tasks(db.session, p.id),
            **forms,
        ),
        status,
    )


@bp.get("/patients/<int:patient_id>")
@staff_required(*VIEW)
def patient(patient_id: int):
    """Timeline, score charts, diary heat map, alerts and the forms to act on."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id)
    return render_patient(p)


@bp.post("/patients/<int:patient_id>/link")
@staff_required(*EDIT)
@lock_target("patient")
def rotate_link(patient_id: int):
    """A new personal link (the old one stops working): how a nurse re-issues a lost card."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    form = RotateLinkForm()
    if not form.validate_on_submit():
        flash(_("A reason is required to issue a new link."), "error")
        return render_patient(p, 422, rotate_form=form)
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
@lock_target("patient")
def set_pin(patient_id: int):
    """Set, generate or remove the PIN; a new PIN is shown once."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    form = PinForm()
    if not form.validate_on_submit():
        flash_errors(form)
        return render_patient(p, 422, pin_form=form)
    pin = {"generate": enrolment.new_pin(), "set": form.pin.data, "remove": None}[form.action.data]
    try:
        with db.session.begin_nested():  # a refused change leaves nothing behind
            enrolment.set_pin(db.session, current_actor(), p, pin, reason=form.reason.data.strip(), now=now())
    except ValueError as exc:
        flash(message(exc), "error")
        return render_patient(p, 422, pin_form=form)
    db.session.commit()
    if pin is None:
        flash(_("The PIN was removed: the link alone now opens the forms."), "ok")
        return redirect(url_for("nurse.patient", patient_id=p.id))
    return render_template("nurse/pin_issued.html", patient=p, pin=pin)


@bp.post("/patients/<int:patient_id>/status")
@staff_required(*EDIT)
@lock_target("patient")
def set_status(patient_id: int):
    """Death, withdrawal, loss to follow-up (later forms become not expected), or back to active."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    form = PatientStatusForm()
    if form.validate_on_submit():
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                clinical.set_status(
                    db.session,
                    current_actor(),
                    p,
                    form.status.data,
                    form.date.data,
                    form.reason.data.strip(),
                    now(),
                    correct_death=bool(form.correct_death.data),
                )
        except ValueError as exc:
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Status saved; the schedule was updated."), "ok")
            return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="status"))
    else:
        flash_errors(form)
    return render_patient(p, 422, status_form=form)


@bp.route("/patients/<int:patient_id>/details", methods=["GET", "POST"])
@staff_required(*EDIT)
@lock_target("patient")
def edit_details(patient_id: int):
    """Contact details, language, time zone and display preferences (reason required; audited)."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    form_class = details_form_class(patient_records.DISPLAY_PREFERENCES)
    if request.method == "GET":
        prefs = p.display_preferences or {}
        form = form_class(
            formdata=None,
            email=p.email,
            phone=p.phone,
            language=p.language,
            timezone=p.timezone,
            **{f"pref_{k}": prefs.get(k, spec.default) for k, spec in patient_records.DISPLAY_PREFERENCES.items()},
        )
    else:
        form = form_class()
    if form.validate_on_submit():
        changes = {
            "email": form.email.data or "",
            "phone": form.phone.data or "",
            "language": form.language.data,
            "timezone": form.timezone.data or "",
        }
        if form.preference_keys:
            changes["display_preferences"] = form.preferences()
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                changed = patient_records.update_details(
                    db.session,
                    current_actor(),
                    p,
                    changes,
                    reason=form.reason.data,
                    languages=current_app.config["LANGUAGES"],
                    now=now(),
                )
        except ValueError as exc:
            flash(message(exc), "error")
            form.rejected = True
        else:
            db.session.commit()
            flash(_("Details saved.") if changed else _("Nothing was changed."), "ok" if changed else "error")
            if changed:
                return redirect(url_for("nurse.patient", patient_id=p.id))
    status = 400 if form.errors or getattr(form, "rejected", False) else 200
    return render_template("nurse/patient_details.html", patient=p, form=form), status


@bp.route("/patients/<int:patient_id>/randomization", methods=["GET", "POST"])
@staff_required(*policy.roles_for("patient.randomization"))
@lock_target("patient")
def correct_randomization(patient_id: int):
    """Correct the arm or randomization date (investigators, admins); the schedule is re-planned."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.randomization")
    if request.method == "GET":
        form = RandomizationForm(formdata=None, arm=p.arm, randomization_date=p.randomization_date)
    else:
        form = RandomizationForm()
    if form.validate_on_submit() and (form.arm.data, form.randomization_date.data) == (p.arm, p.randomization_date):
        flash(_("Nothing was changed."), "error")
    elif form.validate_on_submit():
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                patient_records.correct_randomization(
                    db.session,
                    current_actor(),
                    p,
                    arm=form.arm.data,
                    randomization_date=form.randomization_date.data,
                    reason=form.reason.data,
                    now=now(),
                )
        except ValueError as exc:
            flash(message(exc), "error")
            form.rejected = True
        else:
            db.session.commit()
            flash(_("Randomization corrected; the schedule was re-planned (answered forms are kept)."), "ok")
            return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="timeline"))
    status = 400 if form.errors or getattr(form, "rejected", False) else 200
    return render_template("nurse/randomization.html", patient=p, form=form), status


@bp.route("/patients/<int:patient_id>/timepoints/<int:timepoint_id>/reason", methods=["GET", "POST"])
@staff_required(*policy.roles_for("timepoint.missed_reason"))
@lock_target("patient")
def missed_reason(patient_id: int, timepoint_id: int):
    """Why a form was missed (CLINICAL.md §3); changing an earlier reason needs a reason too."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "timepoint.missed_reason")
    tp = policy.get_owned_or_404(db.session, Timepoint, timepoint_id, p)
    form = MissedReasonForm(missed_reason=tp.missed_reason, text=tp.missed_reason_text)
    if form.validate_on_submit():
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
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
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Reason saved."), "ok")
            if request.args.get("back") == "dashboard":
                return redirect(url_for("nurse.dashboard", _anchor="missing"))
            return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="timeline"))
    status = 422 if request.method == "POST" else 200
    return render_template("nurse/missed_reason.html", patient=p, tp=tp, form=form), status


def flash_errors(form) -> None:
    for name, errors in form.errors.items():
        for error in errors:
            flash(f"{form[name].label.text}: {error}", "error")
