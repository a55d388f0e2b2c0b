"""Thin patient views: personal link, due forms, who answers, survey pages, review, submit.

Each view parses, checks ownership (anything not the signed-in patient's is a 404), calls one
service, commits once and renders or redirects (POST -> save -> redirect).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from flask import abort, current_app, g, redirect, render_template, request, send_file, session, url_for
from flask_babel import refresh
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from qol_app import auth
from qol_app.db import db
from qol_app.i18n import normalise, supported
from qol_app.instrument_forms import PageForm, build_page_form, client_clock
from qol_app.instruments import Instrument, LocalizedInstrument, MissingLanguageError, WordingOverlayError
from qol_app.locking import lock_exempt, lock_target, signed_in_patient_lock
from qol_app.models import Alert, Response, Timepoint
from qol_app.patient import bp, signin, stash
from qol_app.patient.forms import LanguageForm, LargePrintForm, RespondentForm, SignInForm, SubmitForm
from qol_app.patient.render import diary_day, emergency_context, field_views, home_items, item_html, review_rows, safety
from qol_app.redirects import safe_next
from qol_app.security import ParticipationEnded, current_actor, patient_required
from qol_app.services import audit, devices, patient_records, reminder_links, wording
from qol_app.services import responses as svc
from qol_app.services.enrolment import find_by_token


def _use_locale(locale: str | None) -> None:
    """Render this request in ``locale`` (used before sign-in, when no patient is known yet)."""
    g.locale = normalise(locale) or current_app.config["BABEL_DEFAULT_LOCALE"]
    refresh()


def _render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    patient = g.get("patient")
    context.setdefault("safety", safety(patient) if patient is not None else None)
    context.setdefault("signed_in", patient is not None)
    context.setdefault("large_print", _large_print(patient))
    return render_template(template, **context), status


def _large_print(patient: Any) -> bool:
    """Whether the patient's pages are in large print (one item per screen)."""
    return patient is not None and bool(patient_records.display_preference(patient, "large_print"))


def _error(code: int, **context: Any) -> tuple[str, int]:
    return _render("patient/error.html", code, code=code, **context)


_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def _on_csrf_error(view: Any) -> Callable[[_Handler], _Handler]:
    """Register ``handler`` for a view whose POST failed the CSRF check (see ``security._csrf_error``).

    It runs as an error handler, where an ``abort(404)`` would turn into a 500: HTTP errors
    raised inside are rendered here instead.
    """

    def register(handler: _Handler) -> _Handler:
        @functools.wraps(handler)
        def safe(error: Exception) -> Any:
            try:
                return handler(error)
            except HTTPException as exc:
                return _error(exc.code or 500)

        view.keeps_answers_on_csrf_error = safe
        return handler

    return register


@bp.errorhandler(MissingLanguageError)
def _no_wording(error: Exception) -> tuple[str, int]:
    current_app.logger.error("instrument text not available: %s", error)
    db.session.rollback()
    return _error(503, no_wording=True)


@bp.errorhandler(WordingOverlayError)
def _bad_overlay(error: Exception) -> tuple[str, int]:
    return _no_wording(error)


@bp.errorhandler(404)
def _not_found(error: Exception) -> tuple[str, int]:
    return _error(404)


def _ended(patient: Any) -> tuple[str, int]:
    """The kind message for a patient no longer active (died, withdrew, lost), and nothing else:
    no PIN field, no forms, no status (whoever holds the phone may be a relative)."""
    _use_locale(session.get("plang") or patient.language)
    site = patient.site
    return _render(
        "patient/ended.html",
        410,
        phone=site.contact_phone,
        safety=None,
        signed_in=False,
        next_path=url_for("patient.signed_out"),  # the language switch leads back here, not to a form
    )


@bp.errorhandler(ParticipationEnded)
def _participation_ended(error: Exception) -> tuple[str, int]:
    db.session.rollback()
    return _ended(g.ended_patient)


# ---------------------------------------------------------------- personal link and sign-in


@bp.get("/l/<token>")
def link(token: str):
    """Show the sign-in page. Changes nothing: mail scanners open links before people do."""
    patient = find_by_token(db.session, token)
    if patient is None:
        return _error(404, bad_link=True)
    return _sign_in_page(patient)


def _sign_in_page(patient: Any, status: int = 200, **extra: Any) -> tuple[str, int]:
    """The one sign-in page, for the personal link and for reminder links alike."""
    if patient.status != "active":
        return _ended(patient)
    _use_locale(session.get("plang") or patient.language)
    until = signin.locked_until(patient, auth.now())
    context = {
        "form": SignInForm(formdata=None) if extra.pop("fresh", False) else SignInForm(),
        "has_pin": patient.pin_hash is not None,
        "locked_until": until and _local_time(until, patient.tz),
        "next_path": request.path,
        "safety": safety(patient),
    }
    context.update(extra)
    return _render("patient/link.html", status, **context)


@bp.post("/l/<token>")
@lock_exempt  # signing in changes no trial data; a locked patient then sees the closed page
def link_sign_in(token: str):
    patient = find_by_token(db.session, token)
    if patient is None:
        return _error(404, bad_link=True)
    return _sign_in(patient)


def _sign_in(patient: Any, reminder: reminder_links.Lookup | None = None, grant: Any = None):
    """Check the PIN and start the patient's session; after a reminder link, go to its form.

    Signing in with a PIN gives this device a grant (a cookie) to sign in again with the PIN alone
    after signing out; ``grant`` is that grant when it is what is being used."""
    if patient.status != "active":
        return _ended(patient)
    _use_locale(session.get("plang") or patient.language)
    form = SignInForm()
    if not form.validate_on_submit():
        return _render(
            "patient/link.html",
            400,
            form=form,
            has_pin=patient.pin_hash is not None,
            next_path=request.path,
            safety=safety(patient),
        )
    now = auth.now()
    config = current_app.config
    outcome = signin.check_pin(
        db.session,
        current_actor(),
        patient,
        form.pin.data,
        now,
        max_failures=config["PIN_MAX_FAILURES"],
        lock_minutes=config["PIN_LOCK_MINUTES"],
        commit=db.session.commit,
    )
    if not outcome.ok:
        db.session.commit()
        status = 429 if outcome.locked_until else 200
        return _render(
            "patient/link.html",
            status,
            form=SignInForm(formdata=None),
            has_pin=True,
            locked_until=outcome.locked_until and _local_time(outcome.locked_until, patient.tz),
            tries_left=outcome.tries_left,
            next_path=request.path,
            safety=safety(patient),
        )
    chosen, kept = session.pop("plang", None), stash.take_all()
    auth.begin("patient", patient.id, now)
    session[stash.HINT] = patient.id
    stash.put_back(kept)
    actor = audit.Actor("patient", str(patient.id), g.get("request_id"))
    if chosen and chosen != patient.language:
        _set_language(actor, patient, chosen, now)
    via = {"via": "reminder_link", "timepoint_id": reminder.timepoint.id} if reminder is not None else None
    if reminder is not None:
        reminder_links.mark_used(db.session, reminder.link, now)
    audit.record(
        db.session, actor, "sign_in", patient, patient_id=patient.id, site_id=patient.site_id, new=via, now=now
    )
    token = None
    if grant is not None:
        grant.last_used_at = now
    elif patient.pin_hash is not None:
        token = devices.issue(db.session, patient, now, config["PATIENT_DEVICE_DAYS"])
    db.session.commit()
    target = stash.page_for(patient)
    if target is None and reminder is not None:
        target = url_for("patient.start", timepoint_id=reminder.timepoint.id)
    response = redirect(target or url_for("patient.home"))
    if token is not None:
        response.set_cookie(
            devices.COOKIE,
            token,
            max_age=config["PATIENT_DEVICE_DAYS"] * 86400,
            path="/p/",
            secure=config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )
    return response


@_on_csrf_error(link_sign_in)
def _link_page_expired(error: Exception):
    """The sign-in page was open longer than its token lives: show it again, ready to press."""
    patient = find_by_token(db.session, (request.view_args or {}).get("token", ""))
    if patient is None:
        return _error(404, bad_link=True)
    return _sign_in_page(patient, 400, fresh=True, stale=True)


# ---------------------------------------------------------------- reminder links


def _reminder(token: str) -> reminder_links.Lookup | None:
    return reminder_links.find(db.session, token, auth.now())


def _reminder_refused(found: reminder_links.Lookup) -> tuple[str, int]:
    _use_locale(session.get("plang") or found.patient.language)
    return _render("patient/link_expired.html", 410, reason=found.refused, safety=safety(found.patient))


@bp.get("/r/<token>")
def reminder_link(token: str):
    """A reminder's own link: the same sign-in page as the personal link (a GET changes nothing)."""
    found = _reminder(token)
    if found is None:
        return _error(404, bad_link=True)
    if not found.ok:
        return _reminder_refused(found)
    return _sign_in_page(found.patient)


@bp.post("/r/<token>")
@lock_exempt  # signing in changes no trial data; a locked patient then sees the closed page
def reminder_sign_in(token: str):
    found = _reminder(token)
    if found is None:
        return _error(404, bad_link=True)
    if not found.ok:
        return _reminder_refused(found)
    return _sign_in(found.patient, found)


@_on_csrf_error(reminder_sign_in)
def _reminder_page_expired(error: Exception):
    found = _reminder((request.view_args or {}).get("token", ""))
    if found is None:
        return _error(404, bad_link=True)
    if not found.ok:
        return _reminder_refused(found)
    return _sign_in_page(found.patient, 400, fresh=True, stale=True)


@bp.post("/logout")
@patient_required
@lock_exempt
def logout():
    now = auth.now()
    audit.record(
        db.session, current_actor(), "sign_out", g.patient, patient_id=g.patient.id, site_id=g.patient.site_id, now=now
    )
    auth.end("logout", now)
    db.session.commit()
    return redirect(url_for("patient.signed_out"))


def _sign_out(saved: svc.PageSaved, tp: Timepoint):
    """Sign out from a survey page whose answers were just saved (the caller has not committed)."""
    patient, now = g.patient, auth.now()
    audit.record(
        db.session, current_actor(), "sign_out", patient, patient_id=patient.id, site_id=patient.site_id, now=now
    )
    auth.end("logout", now)
    db.session.commit()
    # signed out, but never without the call page after a red finding (call_now: there is an alert)
    if saved.call_now and saved.alert is not None and saved.alert.alert is not None:
        alert = db.session.scalars(select(Alert).where(Alert.id == saved.alert.alert.id)).one()
        context = emergency_context(patient, alert)
        return _render("patient/emergency.html", tp=None, sent=False, signed_in=False, **context)
    return redirect(url_for("patient.signed_out", saved=1))


@_on_csrf_error(logout)
def _logout_anyway(error: Exception):
    """Signing out must work on a shared phone even from a page left open too long (a forged
    sign-out harms nobody)."""
    if g.get("patient") is None:
        return redirect(url_for("patient.signed_out"))
    return logout.__wrapped__()  # type: ignore[attr-defined]  # set by functools.wraps in patient_required


@bp.get("/signed-out")
def signed_out():
    if g.get("patient") is not None:
        return redirect(url_for("patient.home"))
    last = _last_patient()
    if g.get("ended_patient") is not None or (last is not None and last.status != "active"):
        return _ended(g.get("ended_patient") or last)
    _use_signed_out_locale()
    grant = _device_grant(last)
    return _render(
        "patient/signed_out.html",
        expired=request.args.get("expired") == "1",
        saved=request.args.get("saved") == "1",
        kept=stash.has_any(),
        form=SignInForm(formdata=None) if grant is not None else None,
    )


def _device_grant(patient: Any) -> Any:
    """This device's live grant for the patient who last signed in here, if it has one."""
    grant = devices.find(db.session, request.cookies.get(devices.COOKIE), auth.now())
    if grant is None or patient is None or grant.patient_id != patient.id:
        return None
    return grant


@bp.post("/signed-out")
@lock_exempt  # signing in changes no trial data; a locked patient then sees the closed page
def signed_out_sign_in():
    """Back in on the same device after signing out: the device's grant plus the PIN."""
    if g.get("patient") is not None:
        return redirect(url_for("patient.home"))
    last = _last_patient()
    grant = _device_grant(last)
    if grant is None:  # another device, a revoked or expired grant: the personal link is the way in
        _use_signed_out_locale()
        return _render("patient/signed_out.html", 403, refused=True, kept=stash.has_any())
    return _sign_in(last, grant=grant)


@_on_csrf_error(signed_out_sign_in)
def _signed_out_page_expired(error: Exception):
    return redirect(url_for("patient.signed_out"))


def _last_patient() -> Any:
    """The patient who last signed in on this browser, if any."""
    from qol_app.models import Patient

    last = session.get(stash.HINT)
    return db.session.get(Patient, last) if isinstance(last, int) else None


def _use_signed_out_locale() -> None:
    """The language of the patient who last signed in on this browser (or one chosen here)."""
    patient = _last_patient()
    chosen = session.get("plang") or (patient.language if patient is not None else None)
    if chosen:
        _use_locale(chosen)


@bp.post("/language")
@lock_exempt  # the page language is a display choice, not trial data: a locked patient can still read
def language():
    """Switch language: stored on the patient (audited) or, before sign-in, for this browser."""
    form = LanguageForm()
    lang = normalise(form.lang.data) if form.validate_on_submit() else None
    if lang in supported():
        if g.get("patient") is not None:
            _set_language(current_actor(), g.patient, lang, auth.now())
            db.session.commit()
        else:
            session["plang"] = lang
    return redirect(safe_next(request.form.get("next"), url_for("patient.home"), within="/p/"))


@_on_csrf_error(language)
def _language_expired(error: Exception):
    return redirect(safe_next(request.form.get("next"), url_for("patient.home"), within="/p/"))


@bp.post("/large-print")
@patient_required
@lock_exempt  # a display choice, not trial data: a locked patient can still read (as for the language)
def large_print():
    """One tap from any page: large print (one item per screen) on or off; stored on the patient, audited."""
    form = LargePrintForm()
    if form.validate_on_submit():
        patient_records.set_display_preference(
            db.session, current_actor(), g.patient, "large_print", form.on.data == "1", now=auth.now()
        )
        db.session.commit()
    return redirect(safe_next(request.form.get("next"), url_for("patient.home"), within="/p/"))


@_on_csrf_error(large_print)
def _large_print_expired(error: Exception):
    return redirect(safe_next(request.form.get("next"), url_for("patient.home"), within="/p/"))


def _set_language(actor: audit.Actor, patient: Any, lang: str, now: dt.datetime) -> None:
    old = patient.language
    if old == lang:
        return
    patient.language = lang
    audit.record(
        db.session,
        actor,
        "set_language",
        patient,
        patient_id=patient.id,
        site_id=patient.site_id,
        old={"language": old},
        new={"language": lang},
        now=now,
    )


def _local_time(value: dt.datetime, tz: str) -> str:
    from qol_app.i18n import local_datetime, select_locale

    return local_datetime(value, tz, select_locale())


# ---------------------------------------------------------------- recordings


#: A recording never changes under its hash: the browser may keep it (privately) for a year.
RECORDING_MAX_AGE = 365 * 24 * 3600


@bp.get("/audio/<string(length=64):sha256>")
@patient_required
def audio(sha256: str):
    """A site's licensed recording (``<audio>`` on the survey pages), for signed-in patients only.

    Looked up by the SHA-256 of its bytes (no file path is ever taken from the URL), served with
    the content type found on import, byte ranges (phones' media players ask for them) and a
    private, immutable cache lifetime; the ETag is the hash."""
    if any(c not in "0123456789abcdef" for c in sha256):
        abort(404)
    clip = wording.recording(db.session, sha256)
    if clip is None:
        abort(404)
    response = send_file(
        io.BytesIO(clip.data), mimetype=clip.content_type, conditional=True, etag=sha256, max_age=RECORDING_MAX_AGE
    )
    response.cache_control.public = False
    response.cache_control.private = True
    response.cache_control.immutable = True
    return response


# ---------------------------------------------------------------- home


@bp.get("/")
@patient_required
def home():
    now = auth.now()
    if signed_in_patient_lock() is not None:
        return _render("patient/home.html", items=[], locked=True)
    items = home_items(db.session, g.patient, svc.due_timepoints(db.session, g.patient, now), now)
    return _render("patient/home.html", items=items)


# ---------------------------------------------------------------- one timepoint


def _timepoint_or_404(timepoint_id: int) -> Timepoint:
    tp = svc.patient_timepoint(db.session, g.patient, timepoint_id)
    if tp is None:
        abort(404)
    return tp


@bp.get("/t/<int:timepoint_id>")
@patient_required
@lock_target("signed_in_patient", reads=True)
def start(timepoint_id: int):
    """Resume where the patient left off, on this or any other device."""
    tp = _timepoint_or_404(timepoint_id)
    point = svc.resume_point(db.session, tp, g.patient)
    if point is None:
        return redirect(url_for("patient.home"))
    if not svc.is_due(tp, auth.now()):
        return _render("patient/closed.html", 410)
    if tp.respondent is None:
        return redirect(url_for("patient.respondent", timepoint_id=tp.id))
    if isinstance(point, svc.VisitPage):
        return redirect(
            url_for("patient.page", timepoint_id=tp.id, instrument_id=point.instrument_id, page_no=point.page_no)
        )
    return redirect(url_for("patient.review", timepoint_id=tp.id))


@bp.route("/t/<int:timepoint_id>/respondent", methods=["GET", "POST"])
@patient_required
@lock_target("signed_in_patient", reads=True)
def respondent(timepoint_id: int):
    tp = _timepoint_or_404(timepoint_id)
    if not svc.is_due(tp, auth.now()):
        return _render("patient/closed.html", 410)
    form = RespondentForm(data={"respondent": tp.respondent, "relationship": tp.respondent_relationship})
    if form.validate_on_submit():
        try:
            svc.set_respondent(
                db.session, current_actor(), tp, form.respondent.data, form.relationship_code(), auth.now()
            )
        except svc.PatientInactive:
            db.session.rollback()
            return _ended(g.patient)
        db.session.commit()
        return redirect(url_for("patient.start", timepoint_id=tp.id))
    return _render("patient/respondent.html", 400 if form.errors else 200, form=form, tp=tp)


@_on_csrf_error(respondent)
def _respondent_expired(error: Exception):
    if g.get("ended_patient") is not None:
        return _ended(g.ended_patient)
    if g.get("patient") is None:
        return redirect(url_for("patient.signed_out", expired=1))
    tp = _timepoint_or_404((request.view_args or {}).get("timepoint_id", 0))
    form = RespondentForm(formdata=request.form)
    return _render("patient/respondent.html", 400, form=form, tp=tp, stale=True)


@dataclasses.dataclass
class Survey:
    """One instrument of one timepoint, as this patient sees it."""

    tp: Timepoint
    instrument: Instrument
    texts: LocalizedInstrument
    plans: list[svc.PagePlan]
    response: Response | None
    answered: dict[str, float]  # stored values by item id
    owner: Any = None  # the patient

    @property
    def submitted(self) -> bool:
        return self.response is not None and self.response.status == "submitted"

    def plan(self, page_no: int) -> svc.PagePlan:
        if not 1 <= page_no <= len(self.plans):
            abort(404)
        return self.plans[page_no - 1]

    def form_class(self, plan: svc.PagePlan) -> type[PageForm]:
        page = self.texts.page(plan.page_id)
        return build_page_form(self.instrument.id, page, [self.texts.item(i) for i in plan.item_ids], self.texts.locale)


def _survey_or_404(timepoint_id: int, instrument_id: str, patient: Any) -> Survey:
    """The patient's form of one instrument at one timepoint; 404 for anything not theirs."""
    try:
        instrument = svc.registry().get(instrument_id)
    except ValueError:
        abort(404)
    rows = svc.load_survey(db.session, patient, timepoint_id, instrument)
    if rows is None:
        abort(404)
    plans = svc.page_plan(instrument, patient)
    return Survey(rows.timepoint, instrument, rows.texts, plans, rows.response, rows.answered, patient)


def _gate(survey: Survey) -> Any:
    """The page to show instead of the form, if any: already submitted, closed, or who-answers first."""
    if survey.submitted:
        return _render("patient/already.html", tp=survey.tp, texts=survey.texts)
    if not svc.is_due(survey.tp, auth.now()):
        return _render("patient/closed.html", 410)
    if survey.tp.respondent is None:
        return redirect(url_for("patient.respondent", timepoint_id=survey.tp.id))
    return None


def _saved_values(survey: Survey, plan: svc.PagePlan) -> dict[str, str]:
    """The saved answers of a page as form text, so a resumed page shows what was chosen."""
    data: dict[str, str] = {}
    for item_id in plan.item_ids:
        value = survey.answered.get(item_id)
        if value is not None:
            typed = svc.typed_number(survey.instrument, item_id, value)
            data[item_id] = f"{typed:g}" if isinstance(typed, float) else str(typed)
    return data


def _render_page(
    survey: Survey,
    page_no: int,
    values: Mapping[str, str],
    status: int = 200,
    *,
    errors: Mapping[str, Sequence[str]] | None = None,
    confirm_skip: str = "",
    item_no: int | None = None,
    **extra: Any,
):
    """The page with ``values`` pre-filled (saved, kept or posted text per item id).

    ``item_no`` (large print): only that item of the page (1-based), in its own small form.
    """
    plan = survey.plan(page_no)
    shown = plan.item_ids if item_no is None else [plan.item_ids[item_no - 1]]
    numbers = {i: svc.item_number(survey.instrument, i) for i in shown}
    reminded = [(numbers[i], survey.texts.item(i).text) for i in extra.pop("missing", []) if i in numbers]
    views = field_views(survey.texts, shown, numbers, values, errors or {})
    fields = [item_html(f) for f in views]
    clock = client_clock(values.get("client_time"), values.get("client_offset"))
    hidden = {
        "confirm_skip": confirm_skip,
        "client_time": clock[0] or "",
        "client_offset": "" if clock[1] is None else str(clock[1]),
        # what was played on this page (static/listen.js sets 1); kept when the page comes back
        "aid_listen": "1" if values.get("aid_listen") == "1" else "",
        "aid_audio": "1" if values.get("aid_audio") == "1" else "",
    }
    visit = svc.visit_pages(db.session, survey.tp, survey.owner)
    here = svc.visit_page(visit, survey.instrument.id, page_no)
    if item_no is not None:
        hidden["item"] = str(item_no)
        extra.update(
            item_no=item_no,
            item_count=len(plan.item_ids),
            item_view=views[0],
            back_url=_item_back_url(survey, visit, here, page_no, item_no),
        )
    return _render(
        "patient/item.html" if item_no is not None else "patient/page.html",
        status,
        survey=survey,
        plan=plan,
        page_no=page_no,
        visit_no=here.number if here else page_no,
        visit_count=len(visit) if here else len(survey.plans),
        page=survey.texts.page(plan.page_id),
        page_title=survey.texts.page(plan.page_id).title_for(plan.item_ids),
        day=diary_day(survey.tp.target_date, survey.texts.locale) if survey.tp.kind == "diary" else None,
        fields=fields,
        hidden=hidden,
        reminded=reminded,
        client_clock=True,
        listen=True,
        **extra,
    )


@bp.route("/t/<int:timepoint_id>/<instrument_id>/<int:page_no>", methods=["GET", "POST"])
@lock_target("signed_in_patient", reads=True)
def page(timepoint_id: int, instrument_id: str, page_no: int):
    """One survey page: GET shows it (saved answers ticked); POST saves it, then redirects."""
    if g.get("ended_patient") is not None:
        return _ended(g.ended_patient)  # nothing kept: the patient can no longer send it
    if g.get("patient") is None:
        if request.method == "POST":
            return _keep_answers(None)
        return redirect(url_for("patient.signed_out", expired=int(bool(g.get("session_expired")))))
    survey = _survey_or_404(timepoint_id, instrument_id, g.patient)
    tp, plan = survey.tp, survey.plan(page_no)
    gate = _gate(survey)
    if gate is not None:
        return gate
    item_no = _item_no(plan, request.values.get("item")) if _large_print(g.patient) else None
    if request.method == "GET":
        restored = stash.take_for(tp.id, instrument_id, page_no)
        values = _saved_values(survey, plan) | (restored or {})
        missing = [i for i in (request.args.get("missing") or "").split(".") if i in plan.item_ids and i not in values]
        return _render_page(
            survey,
            page_no,
            values,
            confirm_skip=",".join(missing),
            missing=missing,
            restored=bool(restored),
            item_no=item_no,
        )
    if item_no is not None:
        return _save_item(survey, plan, page_no, item_no)
    form = survey.form_class(plan)()
    if not form.validate_on_submit():
        return _refused(survey, page_no, form)
    nav = request.form.get("nav") or "next"
    switch = nav[5:] if nav.startswith("lang:") and normalise(nav[5:]) in supported() else None
    leaving = nav == "signout"
    enlarge = nav == "large_print"  # the large-print switch: saves the ticks, then one item per screen
    backwards = nav == "back"
    optional = {i for i in plan.item_ids if survey.instrument.item(i).optional}
    # Going back, switching language or signing out saves what is ticked without asking about the rest.
    skip = optional if (backwards or switch or leaving or enlarge) else optional | form.confirmed_skips()
    posted = form.answers()
    # A saved number rubbed out: stored as an explicit skip (never the old value kept silently),
    # and the patient is reminded of it as of any question left out.
    cleared = {i for i in plan.item_ids if posted.get(i) is None and survey.answered.get(i) is not None}
    remind_cleared = cleared - skip
    skip = skip | cleared
    now, actor = auth.now(), current_actor()
    response = survey.response or svc.start_response(db.session, actor, tp, survey.texts, now)
    client_time, client_offset = form.client_clock()
    try:
        saved = svc.save_page(
            db.session,
            actor,
            response,
            plan.item_ids,
            posted,
            auth.now,  # read once the form is locked
            skip=skip,
            client_time=client_time,
            client_offset=client_offset,
            texts=survey.texts,
            presentation=svc.Presentation("default", *form.aids()),
        )
    except svc.AlreadySubmitted:
        db.session.rollback()
        return _render("patient/already.html", tp=tp, texts=survey.texts)
    except svc.PatientInactive:
        db.session.rollback()
        return _ended(g.patient)
    if leaving:
        return _sign_out(saved, tp)
    if switch and (lang := normalise(switch)) is not None:  # (never None: switch is a supported language)
        _set_language(actor, g.patient, lang, auth.now())
    if enlarge:
        patient_records.set_display_preference(db.session, actor, g.patient, "large_print", True, now=auth.now())
    db.session.commit()
    if saved.call_now:  # a red finding: the call page first, before anything else
        return redirect(url_for("patient.call", timepoint_id=tp.id))
    if switch or enlarge:
        return redirect(url_for("patient.page", timepoint_id=tp.id, instrument_id=instrument_id, page_no=page_no))
    unanswered = saved.unanswered + sorted(remind_cleared - set(saved.unanswered))
    if unanswered and not backwards:
        return redirect(
            url_for(
                "patient.page",
                timepoint_id=tp.id,
                instrument_id=instrument_id,
                page_no=page_no,
                missing=".".join(unanswered),
            )
        )
    return redirect(_visit_neighbour(tp, instrument_id, page_no, -1 if backwards else 1))


def _item_no(plan: svc.PagePlan, raw: str | None) -> int:
    """The item of the page shown in large print: ``raw`` is 1-based, or ``last``; item 1 otherwise."""
    count = len(plan.item_ids)
    if raw == "last":
        return count
    try:
        number = int(raw or 1)
    except ValueError:
        number = 1
    return min(max(number, 1), count)


def _item_back_url(survey: Survey, visit: Sequence[Any], here: Any, page_no: int, item_no: int) -> str:
    """Back from one item (large print): the item before, across pages and forms; home before the first.

    A plain link: going back posts nothing, so it can never change or lose an answer."""
    tp = survey.tp
    if item_no > 1:
        return url_for(
            "patient.page", timepoint_id=tp.id, instrument_id=survey.instrument.id, page_no=page_no, item=item_no - 1
        )
    index = (here.number - 1 if here else 0) - 1
    if index < 0:
        return url_for("patient.home")
    target = visit[index]
    return url_for(
        "patient.page", timepoint_id=tp.id, instrument_id=target.instrument_id, page_no=target.page_no, item="last"
    )


def _refused(survey: Survey, page_no: int, form: PageForm, item_no: int | None = None) -> tuple[str, int]:
    """The page (or large-print item) again with what was posted and WTForms' messages (422)."""
    return _render_page(
        survey,
        page_no,
        request.form,
        422,
        errors=form.errors,
        confirm_skip=form.confirm_skip.data or "",
        invalid=True,
        item_no=item_no,
    )


def _save_item(survey: Survey, plan: svc.PagePlan, page_no: int, item_no: int):
    """Large print: save the one item posted (one tap on an answer), then show the next item.

    An item already answered and posted without an answer (Next) keeps its answer; an item
    never answered is asked about once, as on a whole page, then left out."""
    tp, item_id = survey.tp, plan.item_ids[item_no - 1]
    page = survey.texts.page(plan.page_id)
    form = build_page_form(survey.instrument.id, page, [survey.texts.item(item_id)], survey.texts.locale)()
    if not form.validate_on_submit():
        return _refused(survey, page_no, form, item_no)
    posted = form.answers()
    here: dict[str, Any] = dict(timepoint_id=tp.id, instrument_id=survey.instrument.id, page_no=page_no)
    shown = svc.Presentation("large_print", *form.aids())
    if posted.get(item_id) is None and survey.answered.get(item_id) is not None:
        saved = None  # Next past an answered item: no answer to change, only what was played
        if survey.response is not None:
            try:
                svc.note_presentation(db.session, current_actor(), survey.response, shown, auth.now())
            except svc.AlreadySubmitted:
                db.session.rollback()
                return _render("patient/already.html", tp=tp, texts=survey.texts)
            db.session.commit()
    else:
        optional = {item_id} if survey.instrument.item(item_id).optional else set()
        now, actor = auth.now(), current_actor()
        response = survey.response or svc.start_response(db.session, actor, tp, survey.texts, now)
        client_time, client_offset = form.client_clock()
        try:
            saved = svc.save_page(
                db.session,
                actor,
                response,
                [item_id],
                posted,
                auth.now,
                skip=optional | form.confirmed_skips(),
                client_time=client_time,
                client_offset=client_offset,
                texts=survey.texts,
                presentation=shown,
            )
        except svc.AlreadySubmitted:
            db.session.rollback()
            return _render("patient/already.html", tp=tp, texts=survey.texts)
        except svc.PatientInactive:
            db.session.rollback()
            return _ended(g.patient)
        db.session.commit()
        if saved.call_now:
            return redirect(url_for("patient.call", timepoint_id=tp.id))
        if saved.unanswered:
            return redirect(url_for("patient.page", **here, item=item_no, missing=item_id))
    if item_no < len(plan.item_ids):
        return redirect(url_for("patient.page", **here, item=item_no + 1))
    return redirect(_visit_neighbour(tp, survey.instrument.id, page_no, 1))


def _visit_neighbour(tp: Timepoint, instrument_id: str, page_no: int, step: int) -> str:
    """The visit's page before or after this one (across forms); the review after the last, home before the first."""
    visit = svc.visit_pages(db.session, tp, g.patient)
    here = svc.visit_page(visit, instrument_id, page_no)
    index = (here.number - 1 if here else 0) + step
    if index < 0:
        return url_for("patient.home")
    if index >= len(visit):
        return url_for("patient.review", timepoint_id=tp.id)
    target = visit[index]
    return url_for("patient.page", timepoint_id=tp.id, instrument_id=target.instrument_id, page_no=target.page_no)


@_on_csrf_error(page)
def _keep_answers(error: Exception | None):
    """A page POST that cannot be saved (expired page token, or no longer signed in): keep what was typed.

    Signed in: show the page again with the posted answers ticked and a fresh token. Signed out:
    keep the answers in this browser's session until the same patient signs in again, and show
    them back only to the browser that last signed in as this timepoint's patient.
    """
    if g.get("ended_patient") is not None:
        return _ended(g.ended_patient)
    args = request.view_args or {}
    tp_id, instrument_id, page_no = args.get("timepoint_id"), args.get("instrument_id"), args.get("page_no")
    patient = g.get("patient")
    if patient is None:
        stash.keep(tp_id, instrument_id, page_no, request.form, auth.now())
        tp = db.session.get(Timepoint, tp_id) if isinstance(tp_id, int) else None
        if tp is None or session.get(stash.HINT) != tp.patient_id or instrument_id not in tp.instruments:
            _use_signed_out_locale()
            return _render("patient/signed_out.html", 401, expired=bool(g.get("session_expired")), kept=True)
        _use_locale(tp.patient.language)
        owner = tp.patient
        mode, status = "signed_out", 401
    else:
        owner, mode, status = patient, "stale", 400
    if not (isinstance(tp_id, int) and isinstance(instrument_id, str) and isinstance(page_no, int)):
        abort(404)  # (never: the page route's converters give these types)
    survey = _survey_or_404(tp_id, instrument_id, owner)
    return _render_page(
        survey,
        page_no,
        request.form,
        status,
        confirm_skip=request.form.get("confirm_skip", ""),
        kept=mode,
        expired=bool(g.get("session_expired")),
        safety=safety(owner),
    )


def _visit_surveys(tp: Timepoint) -> list[Survey]:
    """Every form of the visit, as the patient sees it."""
    return [_survey_or_404(tp.id, instrument_id, g.patient) for instrument_id in tp.instruments]


def _visit_gate(tp: Timepoint, surveys: list[Survey]) -> Any:
    if all(s.submitted for s in surveys):
        return _render("patient/already.html", tp=tp, texts=None)
    if not svc.is_due(tp, auth.now()):
        return _render("patient/closed.html", 410)
    if tp.respondent is None:
        return redirect(url_for("patient.respondent", timepoint_id=tp.id))
    return None


@bp.route("/t/<int:timepoint_id>/submit", methods=["GET", "POST"])
@patient_required
@lock_target("signed_in_patient", reads=True)
def review(timepoint_id: int):
    """One review of the whole visit (only what was skipped), then one Send for all its forms."""
    tp = _timepoint_or_404(timepoint_id)
    surveys = _visit_surveys(tp)
    gate = _visit_gate(tp, surveys)
    if gate is not None:
        return gate
    if all(s.response is None for s in surveys if not s.submitted):
        return redirect(url_for("patient.start", timepoint_id=tp.id))
    form = SubmitForm()
    if form.validate_on_submit():
        client_time, client_offset = form.client_clock()
        try:
            result = svc.submit_visit(
                db.session,
                current_actor(),
                tp,
                g.patient,
                auth.now,  # read once the forms are locked
                texts_for=lambda instrument: svc.localized(db.session, instrument, g.patient.language),
                client_time=client_time,
                client_offset=client_offset,
            )
        except svc.PatientInactive:
            db.session.rollback()
            return _ended(g.patient)
        if result.already:
            db.session.rollback()
            return _render("patient/already.html", tp=tp, texts=None)
        db.session.commit()
        return redirect(url_for("patient.done", timepoint_id=tp.id))
    return _render_review(tp, surveys, form)


def _render_review(tp: Timepoint, surveys: list[Survey], form: SubmitForm, status: int = 200, **extra: Any):
    visit = svc.visit_pages(db.session, tp, g.patient)
    numbers = {(p.instrument_id, p.page_no): p.number for p in visit}
    rows = [
        page
        for survey in surveys
        if not survey.submitted  # a form never opened is listed whole: nothing is sent unseen
        for page in review_rows(db.session, survey, numbers, only_missing=True)
    ]
    return _render(
        "patient/review.html",
        status,
        tp=tp,
        day=diary_day(tp.target_date, g.patient.language) if tp.kind == "diary" else None,
        rows=rows,
        form=form,
        client_clock=True,
        **extra,
    )


@_on_csrf_error(review)
def _review_expired(error: Exception):
    """The review page was open too long: show it again with a fresh token (nothing was sent)."""
    if g.get("ended_patient") is not None:
        return _ended(g.ended_patient)
    if g.get("patient") is None:
        return redirect(url_for("patient.signed_out", expired=1))
    tp = _timepoint_or_404((request.view_args or {}).get("timepoint_id", 0))
    surveys = _visit_surveys(tp)
    gate = _visit_gate(tp, surveys)
    if gate is not None:
        return gate
    return _render_review(tp, surveys, SubmitForm(formdata=None), 400, stale=True)


@bp.get("/t/<int:timepoint_id>/call")
@patient_required
def call(timepoint_id: int):
    """Right after the page whose answers made a red alert: call for help now, then carry on."""
    tp = _timepoint_or_404(timepoint_id)
    alert = db.session.scalar(
        select(Alert)
        .join(Response, Response.id == Alert.response_id)
        .where(Response.timepoint_id == tp.id, Alert.level == "red")
        .order_by(Alert.id)
        .limit(1)
    )
    if alert is None:
        return redirect(url_for("patient.start", timepoint_id=tp.id))
    sent = svc.next_step(db.session, tp, g.patient) is None
    return _render("patient/emergency.html", tp=tp, sent=sent, **emergency_context(g.patient, alert))


@bp.get("/t/<int:timepoint_id>/done")
@patient_required
def done(timepoint_id: int):
    """After the visit's Send: the urgent instruction for a red diary, else one thank-you."""
    tp = _timepoint_or_404(timepoint_id)
    if svc.resume_point(db.session, tp, g.patient) is not None:
        return redirect(url_for("patient.start", timepoint_id=tp.id))
    alerts = db.session.scalars(
        select(Alert).join(Response, Response.id == Alert.response_id).where(Response.timepoint_id == tp.id)
    ).all()
    red = next((a for a in alerts if a.level == "red"), None)
    if red is not None:
        return _render("patient/emergency.html", tp=tp, sent=True, **emergency_context(g.patient, red))
    return _render("patient/done.html", tp=tp, amber=bool(alerts))


@bp.get("/t/<int:timepoint_id>/<instrument_id>/submit")
@bp.get("/t/<int:timepoint_id>/<instrument_id>/done")
@patient_required
def form_pages_moved(timepoint_id: int, instrument_id: str):
    """One form's review and thank-you pages became the visit's (old links and open pages)."""
    tp = _timepoint_or_404(timepoint_id)
    if instrument_id not in tp.instruments:
        abort(404)
    endpoint = "patient.review" if request.path.endswith("/submit") else "patient.done"
    return redirect(url_for(endpoint, timepoint_id=tp.id))
