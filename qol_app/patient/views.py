"""Thin patient views (filled in by the survey work)."""
from __future__ import annotations

from flask import render_template

from qol_app.patient import bp


@bp.get("/signed-out")
def signed_out():
    return render_template("errors/error.html", code=403)
