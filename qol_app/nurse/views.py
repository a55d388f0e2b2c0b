"""Sign-in, account settings and the dashboard (thin: parse, check access, call services, render)."""

from __future__ import annotations

import secrets

from flask import abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from qol_app import auth, demo, policy
from qol_app.config import is_production
from qol_app.db import db
from qol_app.errors import ServiceError
from qol_app.locking import lock_exempt
from qol_app.models import Patient, StaffUser
from qol_app.notify.channels import log_only_channels
from qol_app.nurse import bp, kept
from qol_app.nurse.cards import qr_svg
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import LanguageForm, LoginForm, PasswordChangeForm, TotpCodeForm, TotpOffForm, TotpSetupForm
from qol_app.passwords import check_secret, hash_secret
from qol_app.redirects import safe_next
from qol_app.security import staff_required
from qol_app.services import compliance, heartbeat, notifications, signin_throttle, two_factor, worklist
from qol_app.services import staff as staff_service
from qol_app.web_messages import message


def landing(user: StaffUser) -> str:
    """Where a role starts: the dashboard, or for statisticians the exports (when installed)."""
    if policy.can(user, "dashboard.view"):
        return url_for("nurse.dashboard")
    if "stats" in current_app.blueprints and policy.can(user, "export.run"):
        return url_for("stats.index")
    return url_for("nurse.account")


def _safe_next(target: str | None, user: StaffUser) -> str:
    return safe_next(target, landing(user))


#: Argon2 hash of a random string: an unknown username costs as much time as a wrong password.
_NO_USER_HASH = hash_secret(secrets.token_hex(16))
#: How long the step between password and second factor may take.
PENDING_SECONDS = 300


def _address() -> str:
    return (request.remote_addr or "unknown")[:255]


def _settings() -> signin_throttle.ThrottleSettings:
    return signin_throttle.ThrottleSettings.from_config(current_app.config)


def _requires_totp(user: StaffUser) -> bool:
    return user.role in current_app.config["STAFF_TOTP_REQUIRED_ROLES"]


def _login_page(form, status: int = 200, **extra):
    return (
        render_template(
            "nurse/login.html",
            form=form,
            language_form=LanguageForm(language=_current_lang()),
            expired=g.get("session_expired"),
            **extra,
        ),
        status,
    )


def _throttled_page(form, until):
    flash(
        _("Too many failed sign-ins. Try again after %(time)s.", time=_fmt_time(until)),
        "error",
    )
    return _login_page(form, 429)


def _fmt_time(value) -> str:
    from qol_app.i18n import local_datetime

    return f"{local_datetime(value, 'UTC', _current_lang())} UTC"


def _fail(form, user: StaffUser | None, username: str, at, why: str):
    """Count and audit a failed attempt; the page says as little as possible about why."""
    failure = signin_throttle.record_failure(
        db.session, username=username, address=_address(), now=at, settings=_settings()
    )
    actor = current_actor()
    signin_throttle.audit_attempt(
        db.session, actor, "staff_sign_in_failed", user=user, address=_address(), now=at, detail={"why": why}
    )
    if failure.locked_until is not None:
        signin_throttle.audit_attempt(
            db.session,
            actor,
            "staff_sign_in_locked",
            user=user,
            address=_address(),
            now=at,
            detail={"scopes": list(failure.locked_scopes), "until": failure.locked_until},
        )
    db.session.commit()
    if failure.locked_until is not None:
        return _throttled_page(form, failure.locked_until)
    return None


def _finish(user: StaffUser, at, method: str):
    """The second step passed (or was not needed): start the session."""
    target = session.pop("pending_next", None)
    session.pop("pending_2fa", None)
    unsaved = kept.take_all()  # a nurse's unsaved entry survives the new session
    auth.begin("staff", user.id, at)
    kept.put_back(unsaved, user.id)
    user.last_login_at = at
    signin_throttle.record_success(db.session, username=user.username, now=at)
    signin_throttle.audit_attempt(
        db.session,
        current_actor_for(user),
        "staff_sign_in",
        user=user,
        address=_address(),
        now=at,
        detail={"second_factor": method},
    )
    db.session.commit()
    return redirect(_safe_next(target, user))


def current_actor_for(user: StaffUser):
    from qol_app.services.audit import Actor

    return Actor("staff", str(user.id), g.get("request_id"))


@bp.route("/login", methods=["GET", "POST"])
@lock_exempt
def login():
    form = LoginForm()
    if not form.validate_on_submit():
        return _login_page(form, 400 if request.method == "POST" else 200)
    at, username = now(), form.username.data.strip()
    until = signin_throttle.locked_until(db.session, username=username, address=_address(), now=at)
    if until is not None:
        return _throttled_page(form, until)
    user = db.session.scalar(select(StaffUser).where(StaffUser.username == username))
    good = check_secret(user.password_hash if user is not None else _NO_USER_HASH, form.password.data)
    if user is None or not good or not user.active:
        why = "unknown_user" if user is None else "wrong_password" if not good else "disabled"
        refused = _fail(form, user, username, at, why)
        if refused is not None:
            return refused
        flash(_("Wrong username or password, or the account is disabled."), "error")
        return _login_page(form)
    if is_production(current_app.config) and demo.is_demo(db.session, "staff_users", user.id):
        _fail(form, user, username, at, "demo_account")
        flash(_("Demo accounts cannot sign in on a production installation."), "error")
        return _login_page(form, 403)
    session["pending_next"] = safe_next(request.args.get("next"), "")
    if not user.has_totp and not _requires_totp(user):
        return _finish(user, at, "none")
    session["pending_2fa"] = {"uid": user.id, "at": at.timestamp()}
    if user.has_totp:
        return redirect(url_for("nurse.login_code"))
    return redirect(url_for("nurse.login_setup"))


def _pending_user() -> StaffUser | None:
    """The account whose password was just checked, if that was recent."""
    pending = session.get("pending_2fa")
    if not isinstance(pending, dict):
        return None
    if now().timestamp() - float(pending.get("at", 0)) > PENDING_SECONDS:
        session.pop("pending_2fa", None)
        return None
    user = db.session.get(StaffUser, pending.get("uid"))
    return user if user is not None and user.active else None


@bp.route("/login/code", methods=["GET", "POST"])
@lock_exempt
def login_code():
    """Second step: the TOTP code (or a recovery code)."""
    user = _pending_user()
    if user is None or not user.has_totp:
        flash(_("Please sign in again."), "error")
        return redirect(url_for("nurse.login"))
    form = TotpCodeForm()
    if form.validate_on_submit():
        at = now()
        until = signin_throttle.locked_until(db.session, username=user.username, address=_address(), now=at)
        if until is not None:
            session.pop("pending_2fa", None)
            return _throttled_page(LoginForm(formdata=None), until)
        verified = two_factor.verify(db.session, user, form.code.data, now=at)
        if verified is not None:
            if verified.method == "recovery":
                flash(
                    _("Recovery code used: %(n)s left. Make new ones on your account page.", n=verified.recovery_left),
                    "ok",
                )
            return _finish(user, at, verified.method)
        refused = _fail(LoginForm(formdata=None), user, user.username, at, "wrong_code")
        if refused is not None:
            session.pop("pending_2fa", None)
            return refused
        form.code.errors = [_("That code is not right.")]
        return render_template("nurse/login_code.html", form=form), 200
    return render_template("nurse/login_code.html", form=form), 400 if form.errors else 200


def _setup_page(template: str, form, secret: str, user: StaffUser, status: int = 200, **extra):
    uri = two_factor.provisioning_uri(secret, user.username, current_app.config["TOTP_ISSUER"])
    return render_template(template, form=form, secret=secret, qr=qr_svg(uri, _("Authenticator app")), **extra), status


@bp.route("/login/setup", methods=["GET", "POST"])
@lock_exempt
def login_setup():
    """Second step for an account that must use a second factor but has none yet: set it up now."""
    user = _pending_user()
    if user is None or user.has_totp:
        flash(_("Please sign in again."), "error")
        return redirect(url_for("nurse.login"))
    secret = session.get("pending_secret")
    if not secret:
        secret = session["pending_secret"] = two_factor.new_secret()
    form = TotpSetupForm()
    if form.validate_on_submit():
        at = now()
        try:
            codes = two_factor.enable(db.session, current_actor_for(user), user, secret, form.code.data, now=at)
        except ServiceError as exc:
            form.code.errors = [message(exc)]
        else:
            session.pop("pending_secret", None)
            target = session.get("pending_next")
            _finish(user, at, "totp_setup")
            return render_template("nurse/recovery_codes.html", codes=codes, next_url=_safe_next(target, user))
    return _setup_page("nurse/login_setup.html", form, secret, user, 400 if form.errors else 200)


def _current_lang() -> str:
    from qol_app.i18n import select_locale

    return select_locale()


@bp.post("/language")
@lock_exempt
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
@lock_exempt
def logout():
    auth.end("logout", now())
    db.session.commit()
    return redirect(url_for("nurse.login"))


def _account_page(form, status: int = 200, **extra):
    sites = policy.visible_sites(db.session, g.staff)
    return (
        render_template(
            "nurse/account.html",
            form=form,
            language_form=LanguageForm(language=g.staff.language),
            sites=sites,
            totp_required=_requires_totp(g.staff),
            recovery_left=two_factor.recovery_codes_left(db.session, g.staff) if g.staff.has_totp else None,
            **({"totp_off_form": TotpOffForm(formdata=None)} | extra),
        ),
        status,
    )


@bp.route("/account", methods=["GET", "POST"])
@staff_required()
@lock_exempt
def account():
    """Own settings: language, password and the second factor."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        if not check_secret(g.staff.password_hash, form.current.data):
            form.current.errors = [_("The current password is wrong.")]
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
            except ServiceError as exc:
                form.new.errors = [message(exc)]
            else:
                db.session.commit()
                flash(_("Password changed."), "ok")
                return redirect(url_for("nurse.account"))
    return _account_page(form, 400 if form.errors else 200)


@bp.route("/account/totp", methods=["GET", "POST"])
@staff_required()
@lock_exempt
def account_totp():
    """Set up (or replace) the authenticator app; shows the recovery codes once."""
    secret = session.get("setup_secret")
    if not secret or request.method == "GET":
        secret = session["setup_secret"] = two_factor.new_secret()
    form = TotpSetupForm()
    if form.validate_on_submit():
        try:
            codes = two_factor.enable(db.session, current_actor(), g.staff, secret, form.code.data, now=now())
        except ServiceError as exc:
            form.code.errors = [message(exc)]
        else:
            session.pop("setup_secret", None)
            db.session.commit()
            return render_template("nurse/recovery_codes.html", codes=codes, next_url=url_for("nurse.account"))
    return _setup_page("nurse/account_totp.html", form, secret, g.staff, 400 if form.errors else 200)


@bp.post("/account/totp/off")
@staff_required()
@lock_exempt
def account_totp_off():
    """Turn the second factor off (not for roles that require it); the password confirms."""
    form = TotpOffForm()
    if _requires_totp(g.staff):
        flash(_("Your role requires two-step sign-in."), "error")
        return redirect(url_for("nurse.account"))
    if form.validate_on_submit() and check_secret(g.staff.password_hash, form.password.data):
        two_factor.disable(db.session, current_actor(), g.staff, reason="turned off by the user", now=now())
        db.session.commit()
        flash(_("Two-step sign-in is off."), "ok")
        return redirect(url_for("nurse.account"))
    form.password.errors = [_("The password is wrong.")]
    return _account_page(PasswordChangeForm(formdata=None), 400, totp_off_form=form)


@bp.post("/account/recovery-codes")
@staff_required()
@lock_exempt
def account_recovery_codes():
    """New recovery codes (the old ones stop working), shown once."""
    form = TotpOffForm()
    if not (form.validate_on_submit() and check_secret(g.staff.password_hash, form.password.data)):
        form.password.errors = [_("The password is wrong.")]
        return _account_page(PasswordChangeForm(formdata=None), 400, totp_off_form=form)
    try:
        codes = two_factor.new_recovery_codes(db.session, current_actor(), g.staff, now=now())
    except ServiceError as exc:
        flash(message(exc), "error")
        return redirect(url_for("nurse.account"))
    db.session.commit()
    return render_template("nurse/recovery_codes.html", codes=codes, next_url=url_for("nurse.account"))


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
    figures = compliance.compute(
        db.session,
        scope,
        at,
        rule_order=_rule_order(),
        received_rule=current_app.config.get("COMPLIANCE_RECEIVED_RULE") or compliance.COMPLIANCE_RECEIVED_RULE,
    )
    failures = notifications.recent_failures(db.session, scope, at, days=7)
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
        failures=failures,
        now=at,
        log_only=_log_only(),
    )


def _log_only() -> list[str]:
    """Channels whose backend only logs, on a server not in debug mode (nobody is reached)."""
    if current_app.debug:
        return []
    names = {"email": _("e-mail"), "sms": _("SMS")}
    return [names[c] for c in log_only_channels(current_app.config)]


def _rule_order() -> list[str]:
    from qol_app.nurse.clinical import rule_order

    return rule_order()


def _heartbeat(at):
    """The scheduler's health for the banner."""
    return heartbeat.status(db.session, at, current_app.config["SCHEDULER_STALE_MINUTES"])
