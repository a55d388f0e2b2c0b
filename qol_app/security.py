"""Request-wide protections: request ids, security headers, the access decorators, error pages.

Access is denied by default: a view declares who may use it with a decorator, and patient
or site scoping helpers return 404 for anything that is not the caller's.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, abort, current_app, g, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from qol_app import auth
from qol_app.inputs import DatabaseInt
from qol_app.services.audit import Actor

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def current_actor() -> Actor:
    """The audit actor for this request."""
    rid = g.get("request_id")
    if g.get("staff") is not None:
        return Actor("staff", str(g.staff.id), rid)
    if g.get("patient") is not None:
        return Actor("patient", str(g.patient.id), rid)
    return Actor("system", "web", rid)


class ParticipationEnded(HTTPException):
    """The patient is no longer active (died, withdrawn, lost): only a kind message is shown."""

    code = 410
    description = "participation ended"


def patient_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Only a signed-in patient; others go to the sign-in explanation page (or, for a patient
    no longer active, the kind message the patient blueprint renders for ParticipationEnded)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("ended_patient") is not None:
            raise ParticipationEnded()
        if g.get("patient") is None:
            return redirect(url_for("patient.signed_out", expired=int(bool(g.get("session_expired")))))
        return view(*args, **kwargs)

    return wrapped


def staff_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Only signed-in, active staff with one of ``roles`` (any role when none are named)."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            staff = g.get("staff")
            if staff is None:
                keep = getattr(wrapped, "keeps_answers_signed_out", None)
                if keep is not None and request.method == "POST":
                    return keep()  # a view that can keep what was typed until the user is back
                return redirect(url_for("nurse.login", next=request.full_path))
            if roles and staff.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_roles = roles  # type: ignore[attr-defined]
        return wrapped

    return decorator


def _before_request() -> None:
    # ``g`` is fresh: servers give each request its own app context (and so do the tests' clients).
    given = request.headers.get("X-Request-ID", "")
    # A proxy's request id is kept (it ends up in the audit trail) only when it is a plain token.
    g.request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
    if request.endpoint == "static":
        return
    auth.load_current(auth.now())


#: Endpoints whose responses set their own caching: static files, and the licensed recordings
#: (private, immutable under their hash; no health data in them).
CACHEABLE = frozenset({"static", "patient.audio"})


def _security_headers(response: Any) -> Any:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if current_app.config["SESSION_COOKIE_SECURE"]:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if request.endpoint not in CACHEABLE or (
        request.endpoint != "static" and response.status_code not in (200, 206, 304)
    ):
        # Health data: never keep pages in shared caches or the back-forward cache (nor a
        # recording's redirect to sign in or its 404).
        headers["Cache-Control"] = "no-store"
    headers["X-Request-ID"] = g.get("request_id", "")
    return response


def _error_page(error: HTTPException) -> Any:
    code = error.code or 500
    return render_template("errors/error.html", code=code), code


def _csrf_error(error: CSRFError) -> Any:
    """Views that can keep what was typed handle this themselves; elsewhere a clear page."""
    handler = current_app.view_functions.get(request.endpoint or "")
    keep = getattr(handler, "keeps_answers_on_csrf_error", None)
    if keep is not None:
        return keep(error)
    return render_template("errors/error.html", code=400, csrf=True), 400


def _unexpected(error: Exception) -> Any:
    current_app.logger.exception("unhandled error (request %s)", g.get("request_id"))
    from qol_app.db import db

    db.session.rollback()
    return render_template("errors/error.html", code=500), 500


def init_app(app: Flask) -> None:
    # Before any blueprint adds its routes: ids beyond the database's integer range match none (404).
    app.url_map.converters["int"] = DatabaseInt
    app.before_request(_before_request)
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    for code in (400, 403, 404, 405, 413, 429):
        app.register_error_handler(code, _error_page)
    app.register_error_handler(Exception, _unexpected_or_http)


def _unexpected_or_http(error: Exception) -> Any:
    if isinstance(error, HTTPException):
        return _error_page(error)
    return _unexpected(error)
