"""Account administration (admins only): create, disable/enable, role, password reset, memberships."""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from qol_app import policy
from qol_app.db import db
from qol_app.models import Site, StaffUser
from qol_app.nurse import bp
from qol_app.nurse.common import current_actor, now
from qol_app.nurse.forms import (
    MembershipForm,
    UserActiveForm,
    UserCreateForm,
    UserPasswordForm,
    UserRoleForm,
    choices,
)
from qol_app.security import staff_required
from qol_app.services import staff as staff_service

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
def user_new():
    form = UserCreateForm()
    sites = _sites()
    form.site_id.choices = choices([(0, "—"), *((s.id, f"{s.code} · {s.name}") for s in sites)])
    if form.validate_on_submit():
        chosen = [s for s in sites if s.id == form.site_id.data]
        try:
            user = staff_service.create_user(
                db.session,
                current_actor(),
                username=form.username.data,
                full_name=form.full_name.data,
                role=form.role.data,
                password=form.password.data,
                email=form.email.data or None,
                language=form.language.data,
                sites=chosen,
                now=now(),
            )
        except staff_service.StaffError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(_("Account created."), "ok")
            return redirect(url_for("nurse.user", user_id=user.id))
    return render_template("nurse/admin_user_new.html", form=form)


@bp.get("/admin/users/<int:user_id>")
@staff_required(*MANAGE)
def user(user_id: int):
    target = _user_or_404(user_id)
    sites = _sites()
    membership = MembershipForm()
    membership.site_id.choices = choices((s.id, f"{s.code} · {s.name}") for s in sites)
    return render_template(
        "nurse/admin_user.html",
        user=target,
        sites={s.id: s for s in sites},
        active_form=UserActiveForm(),
        password_form=UserPasswordForm(),
        role_form=UserRoleForm(role=target.role),
        membership_form=membership,
    )


@bp.post("/admin/users/<int:user_id>/active")
@staff_required(*MANAGE)
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
    return redirect(url_for("nurse.user", user_id=target.id))


@bp.post("/admin/users/<int:user_id>/password")
@staff_required(*MANAGE)
def user_password(user_id: int):
    """Reset a password (the account's sessions end; tell the user the new one in person)."""
    target = _user_or_404(user_id)
    form = UserPasswordForm()
    if form.validate_on_submit():
        staff_service.set_password(
            db.session, current_actor(), target, form.password.data, reason=form.reason.data.strip(), now=now()
        )
        db.session.commit()
        flash(_("Password reset."), "ok")
    else:
        flash(_("A password of at least 10 characters and a reason are required."), "error")
    return redirect(url_for("nurse.user", user_id=target.id))


@bp.post("/admin/users/<int:user_id>/role")
@staff_required(*MANAGE)
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
    return redirect(url_for("nurse.user", user_id=target.id))


@bp.post("/admin/users/<int:user_id>/sites")
@staff_required(*MANAGE)
def user_sites(user_id: int):
    """Add (``op=add``) or remove (``op=remove``, reason required) a site membership."""
    target = _user_or_404(user_id)
    form = MembershipForm()
    form.site_id.choices = choices((s.id, s.code) for s in _sites())
    op = request.form.get("op")
    if not form.validate_on_submit() or op not in ("add", "remove"):
        flash(_("Choose a site."), "error")
        return redirect(url_for("nurse.user", user_id=target.id))
    site = db.session.get(Site, form.site_id.data)
    if op == "add":
        staff_service.add_site(db.session, current_actor(), target, site, now=now())
    elif not (form.reason.data or "").strip():
        flash(_("A reason is required to remove a site."), "error")
        return redirect(url_for("nurse.user", user_id=target.id))
    else:
        staff_service.remove_site(db.session, current_actor(), target, site, reason=form.reason.data.strip(), now=now())
    db.session.commit()
    flash(_("Sites updated."), "ok")
    return redirect(url_for("nurse.user", user_id=target.id))
