"""Thin staff views: parse, check access, call a service, render."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from qol_app import auth
from qol_app.db import db
from qol_app.models import Patient, StaffUser
from qol_app.nurse import bp
from qol_app.nurse.forms import LoginForm
from qol_app.passwords import check_secret
from qol_app.security import staff_required


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("nurse.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(select(StaffUser).where(StaffUser.username == form.username.data.strip()))
        if user is not None and user.active and check_secret(user.password_hash, form.password.data):
            now = auth.now()
            auth.begin("staff", user.id, now)
            user.last_login_at = now
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")))
        flash(_("Wrong username or password, or the account is disabled."), "error")
    return render_template("nurse/login.html", form=form)


@bp.post("/logout")
@staff_required()
def logout():
    auth.end("logout", auth.now())
    db.session.commit()
    return redirect(url_for("nurse.login"))


@bp.get("/")
@staff_required()
def dashboard():
    site_ids = g.staff.site_ids
    patients = db.session.scalars(
        select(Patient).where(Patient.site_id.in_(site_ids)).order_by(Patient.study_id)
    ).all() if site_ids else []
    return render_template("nurse/dashboard.html", patients=patients)
