"""Administration: accounts (create, disable/enable, role, password, second factor, memberships),
sites, and data locks (admins and data managers)."""

from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from qol_app import policy
from qol_app.db import db
from qol_app.errors import ServiceError
from qol_app.locking import lock_exempt
from qol_app.models import DataLock, Patient, Site, StaffUser
from qol_app.nurse import bp
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import (
    LockForm,
    MembershipForm,
    ResetTotpForm,
    SiteEditForm,
    SiteForm,
    UnlockForm,
    UserActiveForm,
    UserContactForm,
    UserCreateForm,
    UserPasswordForm,
    UserRoleForm,
    choices,
)
from qol_app.security import staff_required
from qol_app.services import locks, two_factor
from qol_app.services import sites as site_service
from qol_app.services import staff as staff_service
from qol_app.web_messages import message

MANAGE = policy.roles_for("staff.manage")


def _sites() -> list[Site]:
    return list(db.session.scalars(select(Site).order_by(Site.code)))


def _user_or_404(user_id: int) -> StaffUser:
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    return user


@bp.get("/admin/users")
@staff_required(*MANAGE)
def users():
    rows = db.session.scalars(
        select(StaffUser)
        .options(selectinload(StaffUser.memberships))
        .order_by(StaffUser.active.desc(), StaffUser.username)
    ).all()
    return render_template("nurse/admin_users.html", users=rows, sites={s.id: s for s in _sites()})


@bp.route("/admin/users/new", methods=["GET", "POST"])
@staff_required(*MANAGE)
@lock_exempt
def user_new():
    form = UserCreateForm()
    sites = _sites()
    form.site_id.choices = choices([(0, "—"), *((s.id, f"{s.code} · {s.name}") for s in sites)])
    if form.validate_on_submit():
        chosen = [s for s in sites if s.id == form.site_id.data]
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                user = staff_service.create_user(
                    db.session,
                    current_actor(),
                    username=form.username.data,
                    full_name=form.full_name.data,
                    role=form.role.data,
                    password=form.password.data,
                    email=form.email.data or None,
                    phone=form.phone.data or None,
                    language=form.language.data,
                    sites=chosen,
                    now=now(),
                )
        except staff_service.StaffError as exc:
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Account created."), "ok")
            return redirect(url_for("nurse.user", user_id=user.id))
    return render_template(
        "nurse/admin_user_new.html", form=form
    ), 400 if form.errors or request.method == "POST" else 200


def _user_page(target: StaffUser, status: int = 200, **forms):
    """The account page; a rejected form comes back in ``forms`` with what was typed and its errors."""
    sites = _sites()
    membership = forms.pop("membership_form", None) or MembershipForm(formdata=None)
    membership.site_id.choices = choices((s.id, f"{s.code} · {s.name}") for s in sites)
    forms.setdefault("active_form", UserActiveForm(formdata=None))
    forms.setdefault("password_form", UserPasswordForm(formdata=None))
    forms.setdefault("role_form", UserRoleForm(formdata=None, role=target.role))
    forms.setdefault("totp_form", ResetTotpForm(formdata=None))
    forms.setdefault("contact_form", UserContactForm(formdata=None, email=target.email, phone=target.phone))
    return (
        render_template(
            "nurse/admin_user.html",
            user=target,
            sites={s.id: s for s in sites},
            membership_form=membership,
            totp_required=target.role in current_app.config["STAFF_TOTP_REQUIRED_ROLES"],
            **forms,
        ),
        status,
    )


@bp.get("/admin/users/<int:user_id>")
@staff_required(*MANAGE)
def user(user_id: int):
    return _user_page(_user_or_404(user_id))


@bp.post("/admin/users/<int:user_id>/active")
@staff_required(*MANAGE)
@lock_exempt
def user_active(user_id: int):
    """Disable (ends the account's sessions on the server at once) or re-enable."""
    target = _user_or_404(user_id)
    form = UserActiveForm()
    enable = request.form.get("enable") == "1"
    if target.id == g.staff.id and not enable:
        flash(_("You cannot disable your own account."), "error")
    elif form.validate_on_submit():
        staff_service.set_active(
            db.session, current_actor(), target, enable, reason=form.reason.data.strip(), now=now()
        )
        db.session.commit()
        flash(_("Account enabled.") if enable else _("Account disabled; its sessions have ended."), "ok")
    else:
        flash(_("A reason is required."), "error")
        return _user_page(target, 422, active_form=form)
    return redirect(url_for("nurse.user", user_id=target.id))


@bp.post("/admin/users/<int:user_id>/password")
@staff_required(*MANAGE)
@lock_exempt
def user_password(user_id: int):
    """Reset a password (the account's sessions end; tell the user the new one in person)."""
    target = _user_or_404(user_id)
    form = UserPasswordForm()
    if form.validate_on_submit():
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                staff_service.set_password(
                    db.session, current_actor(), target, form.password.data, reason=form.reason.data.strip(), now=now()
                )
        except staff_service.StaffError as exc:
            form.password.errors = [message(exc)]
        else:
            db.session.commit()
            flash(_("Password reset."), "ok")
            return redirect(url_for("nurse.user", user_id=target.id))
    flash(_("A password of at least 12 characters and a reason are required."), "error")
    return _user_page(target, 422, password_form=form)


@bp.post("/admin/users/<int:user_id>/contact")
@staff_required(*MANAGE)
@lock_exempt
def user_contact(user_id: int):
    """E-mail and mobile phone: where the account's alert messages go."""
    target = _user_or_404(user_id)
    form = UserContactForm()
    if form.validate_on_submit():
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                staff_service.set_contact(
                    db.session, current_actor(), target, email=form.email.data, phone=form.phone.data, now=now()
                )
        except ValueError as exc:
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Contact saved."), "ok")
            return redirect(url_for("nurse.user", user_id=target.id))
    return _user_page(target, 422, contact_form=form)


@bp.post("/admin/users/<int:user_id>/role")
@staff_required(*MANAGE)
@lock_exempt
def user_role(user_id: int):
    target = _user_or_404(user_id)
    form = UserRoleForm()
    if target.id == g.staff.id:
        flash(_("You cannot change your own role."), "error")
    elif form.validate_on_submit():
        staff_service.set_role(
            db.session, current_actor(), target, form.role.data, reason=form.reason.data.strip(), now=now()
        )
        db.session.commit()
        flash(_("Role changed."), "ok")
    else:
        flash(_("A reason is required."), "error")
        return _user_page(target, 422, role_form=form)
    return redirect(url_for("nurse.user", user_id=target.id))


@bp.post("/admin/users/<int:user_id>/sites")
@staff_required(*MANAGE)
@lock_exempt
def user_sites(user_id: int):
    """Add (``op=add``) or remove (``op=remove``, reason required) a site membership."""
    target = _user_or_404(user_id)
    form = MembershipForm()
    form.site_id.choices = choices((s.id, s.code) for s in _sites())
    op = request.form.get("op")
    if not form.validate_on_submit() or op not in ("add", "remove"):
        flash(_("Choose a site."), "error")
        return _user_page(target, 422, membership_form=form)
    site = db.session.get_one(Site, form.site_id.data)
    if op == "add":
        staff_service.add_site(db.session, current_actor(), target, site, now=now())
    elif not (form.reason.data or "").strip():
        flash(_("A reason is required to remove a site."), "error")
        return _user_page(target, 422, membership_form=form)
    else:
        staff_service.remove_site(db.session, current_actor(), target, site, reason=form.reason.data.strip(), now=now())
    db.session.commit()
    flash(_("Sites updated."), "ok")
    return redirect(url_for("nurse.user", user_id=target.id))


@bp.post("/admin/users/<int:user_id>/totp")
@staff_required(*MANAGE)
@lock_exempt
def user_totp_reset(user_id: int):
    """Turn off an account's second factor (lost phone); a role that requires one sets it up at next sign-in."""
    target = _user_or_404(user_id)
    form = ResetTotpForm()
    if not form.validate_on_submit():
        flash(_("A reason is required."), "error")
        return _user_page(target, 422, totp_form=form)
    if two_factor.disable(db.session, current_actor(), target, reason=form.reason.data.strip(), now=now()):
        db.session.commit()
        flash(_("Two-step sign-in was reset for this account."), "ok")
    else:
        flash(_("This account has no two-step sign-in to reset."), "error")
    return redirect(url_for("nurse.user", user_id=target.id))


# ---- sites ------------------------------------------------------------------------------------
SITES = policy.roles_for("site.manage")


@bp.route("/admin/sites", methods=["GET", "POST"])
@staff_required(*SITES)
@lock_exempt
def sites():
    """Every site, and the form to add one."""
    form = SiteForm()
    if request.method == "GET":
        form = SiteForm(formdata=None, default_language="zh_Hans")
    if form.validate_on_submit():
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                site = site_service.create_site(
                    db.session,
                    current_actor(),
                    code=form.code.data,
                    name=form.name.data,
                    timezone=form.timezone.data,
                    default_language=form.default_language.data,
                    emergency_phone=form.emergency_phone.data,
                    contact_phone=form.contact_phone.data,
                    languages=current_app.config["LANGUAGES"],
                    now=now(),
                )
        except ServiceError as exc:
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Site %(code)s created.", code=site.code), "ok")
            return redirect(url_for("nurse.sites"))
    status = 422 if request.method == "POST" else 200
    return render_template("nurse/admin_sites.html", sites=_sites(), form=form), status


@bp.route("/admin/sites/<int:site_id>", methods=["GET", "POST"])
@staff_required(*SITES)
@lock_exempt
def site(site_id: int):
    """Change a site (reason required). A new time zone re-plans its patients' forms not yet started,
    so it is refused while the site or the trial is locked."""
    row = db.session.get(Site, site_id)
    if row is None:
        abort(404)
    form = SiteEditForm() if request.method == "POST" else SiteEditForm(formdata=None, obj=row)
    if form.validate_on_submit():
        changes = {name: getattr(form, name).data for name in site_service.FIELDS}
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                if changes["timezone"].strip() != row.timezone:
                    locks.check_unlocked(db.session, now(), site_id=row.id)
                changed = site_service.update_site(
                    db.session,
                    current_actor(),
                    row,
                    changes,
                    reason=form.reason.data,
                    languages=current_app.config["LANGUAGES"],
                    now=now(),
                )
        except ServiceError as exc:
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Site saved.") if changed else _("Nothing was changed."), "ok" if changed else "error")
            if changed:
                return redirect(url_for("nurse.sites"))
    status = 422 if request.method == "POST" else 200
    return render_template("nurse/admin_site.html", site=row, form=form), status


# ---- data locks -------------------------------------------------------------------------------
LOCKERS = policy.roles_for("lock.manage")


def _locks_page(form: LockForm | None = None, status: int = 200, unlock_form: UnlockForm | None = None):
    form = form or LockForm(formdata=None)
    all_sites = _sites()
    form.site_id.choices = choices([(0, "—"), *((s.id, f"{s.code} · {s.name}") for s in all_sites)])
    rows = locks.all_locks(db.session)
    patient_ids = {r.patient_id for r in rows if r.patient_id}
    study_ids = dict(db.session.execute(select(Patient.id, Patient.study_id).where(Patient.id.in_(patient_ids))).all())
    return (
        render_template(
            "nurse/admin_locks.html",
            form=form,
            unlock_form=unlock_form or UnlockForm(formdata=None),
            locks=rows,
            sites={s.id: s for s in all_sites},
            study_ids=study_ids,
            now=now(),
        ),
        status,
    )


@bp.route("/admin/locks", methods=["GET", "POST"])
@staff_required(*LOCKERS)
@lock_exempt
def data_locks():
    """Lock the trial, a site or a patient from a moment on (reason required); the list of locks."""
    if request.method == "GET":
        return _locks_page()
    form = LockForm()
    form.site_id.choices = choices([(0, "—"), *((s.id, s.code) for s in _sites())])
    if form.validate_on_submit():
        site = db.session.get(Site, form.site_id.data) if form.scope.data == "site" else None
        patient = None
        if form.scope.data == "patient":
            patient = db.session.scalar(select(Patient).where(Patient.study_id == form.study_id.data.strip()))
            if patient is None:
                form.study_id.errors = [_("No patient with this study id.")]
                return _locks_page(form, 422)
        try:
            with db.session.begin_nested():  # a refused change leaves nothing behind
                locks.lock(
                    db.session,
                    current_actor(),
                    form.scope.data,
                    site=site,
                    patient=patient,
                    at=form.moment(),
                    reason=form.reason.data,
                    now=now(),
                )
        except ServiceError as exc:
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(_("Lock saved."), "ok")
            return redirect(url_for("nurse.data_locks"))
    return _locks_page(form, 422)


@bp.post("/admin/locks/<int:lock_id>/release")
@staff_required(*LOCKERS)
@lock_exempt
def release_lock(lock_id: int):
    """Release a lock (reason required): writes are accepted again."""
    row = db.session.get(DataLock, lock_id)
    if row is None:
        abort(404)
    form = UnlockForm()
    if not form.validate_on_submit():
        flash(_("A reason is required to release a lock."), "error")
        return _locks_page(status=422, unlock_form=form)
    try:
        with db.session.begin_nested():  # a refused change leaves nothing behind
            locks.release(db.session, current_actor(), row, reason=form.reason.data, now=now())
    except ServiceError as exc:
        flash(message(exc), "error")
        return _locks_page(status=422, unlock_form=form)
    db.session.commit()
    flash(_("Lock released."), "ok")
    return redirect(url_for("nurse.data_locks"))
