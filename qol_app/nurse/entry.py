"""Staff-entered forms (paper, interview, site tablet) and corrections of submitted forms.

Reuses the instrument form factory (one field per item from its item-type registry) and the
responses service, which stores the form as the patient's own revision 0, marks the mode and
respondent, scores it and raises diary alerts exactly as a web submission would.
"""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException
from wtforms import DateField, RadioField, SelectField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from qol_app import policy
from qol_app.db import db
from qol_app.instrument_forms import build_page_form
from qol_app.instruments.wording import LocalizedPage
from qol_app.labels import MODE_LABELS, RELATIONSHIP_LABELS, RESPONDENT_LABELS
from qol_app.locking import lock_target
from qol_app.models import Response, Timepoint
from qol_app.nurse import bp, kept
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import choices
from qol_app.scheduling.timewindows import local_date_of, zone
from qol_app.security import staff_required
from qol_app.services import responses
from qol_app.services.compliance import current_status
from qol_app.web_messages import message

STAFF_MODES = ("paper_transcribed", "interview", "site_tablet")
ENTERABLE = ("open", "overdue", "partial", "missed")


def _entry_form(texts, shown: tuple[str, ...]):
    """The factory's page form over every presented item, plus mode and respondent."""
    items = tuple(item for item in texts.items if item.id in shown)
    page = LocalizedPage("all", texts.title, items)
    page_form = build_page_form(texts.instrument_id, page, items, texts.locale)
    extra = {
        "entry_mode": RadioField(
            _l("How were the answers collected?"),
            choices=choices((m, MODE_LABELS[m]) for m in STAFF_MODES),
            validators=[InputRequired()],
        ),
        "entry_respondent": RadioField(
            _l("Who answered?"), choices=choices(RESPONDENT_LABELS.items()), validators=[InputRequired()]
        ),
        "entry_relationship": SelectField(
            _l("Proxy's relationship to the patient"),
            choices=choices([("", "—"), *RELATIONSHIP_LABELS.items()]),
            validators=[Optional()],
        ),
        "entry_completed_on": DateField(
            _l("Date the patient completed the form (paper or interview)"), validators=[Optional()]
        ),
    }
    return type(f"Staff{page_form.__name__}", (page_form,), extra)


def _entry(patient_id: int, timepoint_id: int, instrument_id: str):
    """The patient, timepoint, texts and form class of one enterable form; 404 otherwise."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "patient.edit")
    tp = policy.get_owned_or_404(db.session, Timepoint, timepoint_id, p)
    if instrument_id not in tp.instruments or current_status(tp, now()) not in ENTERABLE:
        abort(404)
    instrument = responses.registry().get(instrument_id)
    texts = responses.localized(db.session, instrument, p.language)
    shown = responses.presented_items(instrument, p)
    return p, tp, texts, _entry_form(texts, shown)


def _render_entry(p, tp, texts, form, status: int = 200, **notices):
    instrument = responses.registry().get(texts.instrument_id)
    return render_template(
        "nurse/enter_form.html",
        patient=p,
        tp=tp,
        texts=texts,
        form=form,
        item_fields=[(responses.paper_number(instrument, item_id), form[item_id]) for item_id in form.item_ids],
        **notices,
    ), status


@bp.route("/patients/<int:patient_id>/timepoints/<int:timepoint_id>/enter/<instrument_id>", methods=["GET", "POST"])
@staff_required(*policy.roles_for("patient.edit"))
@lock_target("patient")
def enter_form(patient_id: int, timepoint_id: int, instrument_id: str):
    p, tp, texts, form_class = _entry(patient_id, timepoint_id, instrument_id)
    restored = kept.take_for(request.path) if request.method == "GET" else None
    if restored is not None:
        return _render_entry(p, tp, texts, form_class(formdata=restored), restored=True)
    mode = request.args.get("mode")  # e.g. "interview" after a call task's "done over the phone"
    today = local_date_of(now(), zone(p.tz))
    form = form_class(
        entry_respondent=tp.respondent or "self",
        entry_relationship=tp.respondent_relationship or "",
        entry_mode=mode if mode in STAFF_MODES else None,
        entry_completed_on=today,
    )
    if form.validate_on_submit():
        relationship = form.entry_relationship.data or None
        if form.entry_respondent.data == "proxy" and not relationship:
            form.entry_relationship.errors = [_("Choose the proxy's relationship.")]
        else:
            try:
                with db.session.begin_nested():  # a refused change leaves nothing behind
                    result = responses.enter_on_behalf(
                        db.session,
                        g.staff,
                        tp,
                        instrument_id,
                        form.answers(),
                        now(),
                        mode=form.entry_mode.data,
                        respondent=form.entry_respondent.data,
                        relationship=relationship,
                        language=p.language,
                        actor=current_actor(),
                        # the page always sends the date (today unless changed); a bare POST means today
                        completed_on=form.entry_completed_on.data if "entry_completed_on" in request.form else today,
                    )
            except responses.AlreadySubmitted:
                flash(_("This form was already submitted; correct it from the timeline instead."), "error")
                return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="timeline"))
            except ValueError as exc:
                flash(message(exc), "error")
            else:
                db.session.commit()
                flash(_("Form saved and scored."), "ok")
                if result.alert is not None and result.alert.level == "red":
                    flash(_("RED ALERT raised by these answers: act now."), "error")
                return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="timeline"))
    return _render_entry(p, tp, texts, form, 422 if request.method == "POST" else 200)


def _keep_entry(error: Exception | None = None):
    """The entry could not be saved (the page's token or the session expired): keep every answer.

    Still signed in: the form again, filled in as posted, with a fresh token (nothing saved yet).
    Signed out: the answers are kept in this browser and given back after signing in again.
    """
    if g.get("staff") is None:
        if kept.keep(request.path, request.form, now()):
            flash(_("Your session ended before the form was saved. Sign in again: what you entered is kept."), "error")
        return redirect(url_for("nurse.login", next=request.path))
    args = request.view_args or {}
    try:
        p, tp, texts, form_class = _entry(
            args.get("patient_id", 0), args.get("timepoint_id", 0), args.get("instrument_id", "")
        )
    except HTTPException:  # no such form for this user: the expired page is what to say
        return render_template("errors/error.html", code=400, csrf=True), 400
    return _render_entry(p, tp, texts, form_class(formdata=request.form), 400, stale=True)


enter_form.keeps_answers_on_csrf_error = _keep_entry  # type: ignore[attr-defined]
enter_form.keeps_answers_signed_out = _keep_entry  # type: ignore[attr-defined]


@bp.route("/patients/<int:patient_id>/responses/<int:response_id>/correct", methods=["GET", "POST"])
@staff_required(*policy.roles_for("response.correct"))
@lock_target("patient")
def correct_form(patient_id: int, response_id: int):
    """Correct a submitted form: a new audited revision supersedes it (never an edit in place)."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "response.correct")
    response = policy.get_owned_or_404(db.session, Response, response_id, p)
    if response.status != "submitted":
        abort(404)
    instrument = responses.registry().get(response.instrument_id)
    texts = responses.localized(db.session, instrument, response.language)
    stored = {
        item_id: responses.typed_value(instrument, item_id, row)
        for item_id, row in responses.answers_of(db.session, response).items()
    }
    shown = tuple(i for i in responses.presented_items(instrument, p) if i in stored) or tuple(stored)
    items = tuple(item for item in texts.items if item.id in shown)
    page = LocalizedPage("all", texts.title, items)
    page_form = build_page_form(texts.instrument_id, page, items, texts.locale)
    form_class = type(
        f"Correct{page_form.__name__}",
        (page_form,),
        {
            "correction_reason": TextAreaField(
                _l("Reason for the correction"), validators=[InputRequired(), Length(max=255)]
            )
        },
    )
    form = form_class(data=stored) if request.method == "GET" else form_class()
    if form.validate_on_submit():
        changes = {k: v for k, v in form.answers().items() if v != stored.get(k)}
        if not changes:
            flash(_("Nothing was changed."), "error")
        else:
            try:
                with db.session.begin_nested():  # a refused change leaves nothing behind
                    responses.correct_response(
                        db.session,
                        g.staff,
                        response,
                        changes,
                        form.correction_reason.data,
                        now(),
                        actor=current_actor(),
                    )
            except ValueError as exc:
                flash(message(exc), "error")
            else:
                db.session.commit()
                flash(_("Correction saved as a new revision and rescored."), "ok")
                return redirect(url_for("nurse.patient", patient_id=p.id, _anchor="timeline"))
    return render_template(
        "nurse/correct_form.html",
        patient=p,
        response=response,
        texts=texts,
        form=form,
        item_fields=[form[item_id] for item_id in form.item_ids],
    ), 422 if request.method == "POST" else 200
