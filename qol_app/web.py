"""Blueprint registration and template helpers shared by every audience."""

from __future__ import annotations

from flask import Flask, current_app, redirect, send_from_directory, url_for


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
        """Alive: the process answers (no database access; for the supervisor and load balancer)."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        """Ready: database reachable, schema at the newest migration, scheduler heartbeat fresh, the
        configured schedule in force (else 503)."""
        from qol_app import auth
        from qol_app.db import db
        from qol_app.migrations import head_revisions
        from qol_app.services import protocol
        from qol_app.services.health import readiness

        checks = readiness(
            db.session,
            auth.now(),
            heads=head_revisions(),
            stale_minutes=int(current_app.config.get("SCHEDULER_STALE_MINUTES") or 30),
            schedule_version=protocol.current().schedule.version_label,
        )
        db.session.rollback()
        ready = all(check.ok for check in checks)
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in checks},
        }
        return body, 200 if ready else 503

    @app.get("/favicon.ico")
    def favicon():
        """Browsers and tools ask for it at the root; nginx serves it directly in production."""
        return send_from_directory(app.static_folder or "static", "favicon.ico", max_age=86400)
