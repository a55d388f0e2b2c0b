"""Statistician blueprint: analysis-ready exports (page with filters -> zip download)."""

from flask import Blueprint

bp = Blueprint("stats", __name__, template_folder="../templates")

from qol_app.stats import views  # noqa: E402,F401
