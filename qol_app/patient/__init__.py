"""Patient-facing blueprint: personal link, sign-in, due forms, survey pages."""

from flask import Blueprint

bp = Blueprint("patient", __name__, template_folder="../templates")

from qol_app.patient import views  # noqa: E402,F401
