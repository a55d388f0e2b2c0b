"""Staff-facing blueprint: sign-in, dashboard, patients, events, alerts."""
from flask import Blueprint

bp = Blueprint("nurse", __name__, template_folder="../templates")

from qol_app.nurse import views  # noqa: E402,F401
