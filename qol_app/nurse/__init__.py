"""Staff-facing blueprint: sign-in, dashboard, patients, events, alerts, accounts."""

from flask import Blueprint

bp = Blueprint("nurse", __name__, template_folder="../templates")

from qol_app.nurse import admin, alerts, calls, common, entry, events, history, patients, views  # noqa: E402,F401
