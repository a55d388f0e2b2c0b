"""The personal-link card: QR code (inline SVG from segno) plus PIN, in the patient's language.

The token exists only in this response: the database keeps its hash. So the card is rendered
straight from the POST that created the token (no redirect, nothing in the cookie), and the
page is ``no-store`` like every page. Losing it means rotating the link, which is audited.
"""

from __future__ import annotations

import segno
from flask import current_app, render_template
from flask_babel import force_locale
from markupsafe import Markup
from werkzeug.routing import BuildError

from qol_app.models import Patient


def personal_link(token: str) -> str:
    """The public address a patient's phone opens (``PUBLIC_BASE_URL`` + the patient route)."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    try:
        from flask import url_for

        path = url_for("patient.link", token=token, _external=False)
    except BuildError:  # pragma: no cover - the patient blueprint names its route "link"
        path = f"/p/{token}"
    return base + path


def qr_svg(link: str, title: str) -> Markup:
    """An inline SVG QR code (no JS, no style attributes: allowed by the CSP)."""
    code = segno.make(link, error="m")
    return Markup(
        code.svg_inline(scale=5, border=4, dark="#000", light="#fff", title=title, svgclass="qr", lineclass=None)
    )


def render_issued(patient: Patient, token: str, pin: str | None, *, new: bool) -> str:
    """The page after enrolment or link rotation: staff instructions around a printable card."""
    link = personal_link(token)
    with force_locale(patient.language):
        card = render_template(
            "nurse/_card.html", patient=patient, link=link, pin=pin, qr=qr_svg(link, patient.study_id)
        )
    return render_template("nurse/issued.html", patient=patient, card=Markup(card), new=new, pin=pin)
