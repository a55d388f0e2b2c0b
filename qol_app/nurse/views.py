"""Sign-in, account settings and the dashboard (thin: parse, check access, call services, render)."""

from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from qol_app import auth, policy
from qol_app.db import db
from qol_app.models import Patient, StaffUser
from qol_app.nurse import bp, kept
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import LanguageForm, LoginForm, PasswordChangeForm
from qol_app.passwords import check_secret
from qol_app.redirects import safe_next
from qol_app.security import staff_required
from qol_app.services import compliance, heartbeat, worklist
from qol_app.services import staff as staff_service


def landing(user: StaffUser) -> str:
    """Where a role starts: the dashboard, or for statisticians the exports (when installed)."""
    if policy.can(user, "dashboard.view"):
        return url_for("nurse.dashboard")
    if "stats" in current_app.blueprints and policy.can(user, "export.run"):
        return url_for("stats.index")
    return url_for("nurse.account")


def _safe_next(target: str | None, user: StaffUser) -> str:
    return safe_next(target, landing(user))


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(select(StaffUser).where(StaffUser.username == form.username.data.strip()))
        if user is not None and user.active and check_secret(user.password_hash, form.password.data):
            at = now()
            unsaved = kept.take_all()
            auth.begin("staff", user.id, at)
            kept.put_back(unsaved, user.id)
            user.last_login_at = at
            db.session.commit()
            return redirect(_safe_next(request.args.get("next"), user))
        flash(_("Wrong username or password, or the account is disabled."), "error")
    return render_template(
        "nurse/login.html",
        form=form,
        language_form=LanguageForm(language=_current_lang()),
        expired=g.get("session_expired"),
    )


def _current_lang() -> str:
    from qol_app.i18n import select_locale

    return select_locale()


@bp.post("/language")
def language():
    """Switch the UI language: stored on the account when signed in, else on this browser."""
    form = LanguageForm()
    if not form.validate_on_submit() or form.language.data not in current_app.config["LANGUAGES"]:
        abort(400)
    if g.get("staff") is not None:
        staff_service.set_language(db.session, current_actor(), g.staff, form.language.data, now=now())
        db.session.commit()
    else:
        session["lang"] = form.language.data
    return redirect(safe_next(request.form.get("next"), url_for("nurse.login")))


@bp.post("/logout")
@staff_required()
def logout():
    auth.end("logout", now())
    db.session.commit()
    return redirect(url_for("nurse.login"))


@bp.route("/account", methods=["GET", "POST"])
@staff_required()
def account():
    """Own settings: language and password."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        if not check_secret(g.staff.password_hash, form.current.data):
            flash(_("The current password is wrong."), "error")
        else:
            try:
                staff_service.set_password(
                    db.session,
                    current_actor(),
                    g.staff,
                    form.new.data,
                    reason="changed by the user",
                    now=now(),
                    keep_session=g.login_session.id,
                )
            except staff_service.StaffError:
                flash(_("The new password is too short."), "error")
            else:
                db.session.commit()
                flash(_("Password changed."), "ok")
                return redirect(url_for("nurse.account"))
    sites = policy.visible_sites(db.session, g.staff)
    return render_template(
        "nurse/account.html", form=form, language_form=LanguageForm(language=g.staff.language), sites=sites
    )


@bp.get("/")
@staff_required(*policy.roles_for("dashboard.view"))
def dashboard():
    """Work list, forms waiting for a reason, compliance; one site or all the user's sites."""
    sites = policy.visible_sites(db.session, g.staff)
    site_id = request.args.get("site", type=int)
    scope = policy.patient_clause(g.staff)
    if site_id is not None:
        if site_id not in {s.id for s in sites}:
            abort(404)
        scope = scope & (Patient.site_id == site_id)
    at = now()
    work = worklist.build(db.session, scope, at)
    missing, missing_total = worklist.missing_reasons(db.session, scope, at, limit=20)
    figures = compliance.compute(db.session, scope, at, rule_order=_rule_order())
    return render_template(
        "nurse/dashboard.html",
        sites=sites,
        site_id=site_id,
        work=work.by_category(),
        truncated=work.truncated,
        missing=missing,
        missing_total=missing_total,
        figures=figures,
        compliance=compliance,
        site_names={s.id: s for s in sites},
        heartbeat=_heartbeat(at),
    )


def _rule_order() -> list[str]:
    from qol_app.nurse.clinical import rule_order

    return rule_order()


def _heartbeat(at):
    """The scheduler's health for the banner."""
    return heartbeat.status(db.session, at, current_app.config["SCHEDULER_STALE_MINUTES"])
