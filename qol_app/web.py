"""Blueprint registration and template helpers shared by every audience."""

from __future__ import annotations

from flask import Flask, redirect, url_for


def init_app(app: Flask) -> None:
    from qol_app.nurse import bp as nurse_bp
    from qol_app.patient import bp as patient_bp
    from qol_app.stats import bp as stats_bp

    app.register_blueprint(patient_bp, url_prefix="/p")
    app.register_blueprint(nurse_bp, url_prefix="/staff")
    app.register_blueprint(stats_bp, url_prefix="/stats")

    from qol_app import locking

    locking.init_app(app)

    @app.get("/")
    def index():  # pragma: no cover - a trivial redirect
        return redirect(url_for("nurse.login"))

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}
