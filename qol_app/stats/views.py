"""Export page and download (thin: parse the form, check the role, run the export, send the zip)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from flask import current_app, g, render_template, send_file
from sqlalchemy import select

from qol_app import auth
from qol_app.db import db
from qol_app.export.source import ExportFilters
from qol_app.export.build import ordered_instruments
from qol_app.export.run import ExportRequest, ExportSettings, run_export
from qol_app.models import AuditEvent, Site, StaffUser
from qol_app.policy import roles_for
from qol_app.security import current_actor, staff_required
from qol_app.services.responses import registry
from qol_app.stats import bp
from qol_app.stats.forms import ExportForm, choices

EXPORTERS = roles_for("export.run")


def _form() -> ExportForm:
    form = ExportForm()
    form.sites.choices = choices((code, code) for code in db.session.scalars(select(Site.code).order_by(Site.code)))
    reg = registry()
    form.instruments.choices = choices((i, reg.get(i).name["en"]) for i in ordered_instruments(reg))
    return form


def _recent_exports(limit: int = 10) -> list[dict]:
    """The last exports from the audit trail, newest first (who, when, what)."""
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "export").order_by(AuditEvent.id.desc()).limit(limit)
    ).all()
    ids = {int(e.actor_id) for e in events if e.actor_type == "staff" and (e.actor_id or "").isdigit()}
    names = dict(db.session.execute(select(StaffUser.id, StaffUser.username).where(StaffUser.id.in_(ids))).all())
    return [
        {
            "at": e.occurred_at,
            "who": names.get(int(e.actor_id), e.actor_id)
            if e.actor_type == "staff" and (e.actor_id or "").isdigit()
            else f"{e.actor_type}:{e.actor_id}",
            **(e.new or {}),
        }
        for e in events
    ]


def _page(form: ExportForm, status: int = 200):
    settings = ExportSettings.from_config(current_app.config)
    return render_template(
        "stats/index.html", form=form, iso_allowed=settings.iso_dates_allowed, recent=_recent_exports()
    ), status


@bp.get("/")
@staff_required(*EXPORTERS)
def index():
    return _page(_form())


@bp.post("/export")
@staff_required(*EXPORTERS)
def export():
    """Run the export with the form's filters and send the zip (files + manifest); audited."""
    form = _form()
    if not form.validate_on_submit():
        return _page(form, 400)
    now = auth.now()
    settings = ExportSettings.from_config(current_app.config)
    try:
        wanted = ExportRequest(
            formats=tuple(form.formats.data),
            filters=ExportFilters(
                sites=tuple(form.sites.data),
                arms=tuple(form.arms.data),
                instruments=tuple(form.instruments.data),
                date_from=form.date_from.data,
                date_to=form.date_to.data,
            ),
            as_of=form.as_of_value(now),
            iso_dates=bool(form.iso_dates.data and settings.iso_dates_allowed),
            locale=form.labels.data,
            threshold=form.threshold.data,
        )
        work = Path(tempfile.mkdtemp(prefix="qol-export-"))
        try:
            result = run_export(
                db.session, wanted, work, actor=current_actor(), now=now, settings=settings, registry=registry()
            )
            db.session.commit()
            handle = result.zip_path.open("rb")  # stays readable after its folder is removed (POSIX)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except (ValueError, PermissionError) as exc:
        db.session.rollback()
        form.as_of.errors = [*form.as_of.errors, str(exc)]
        return _page(form, 400)
    current_app.logger.info("export %s by staff %s", result.zip_path.name, g.staff.id)
    return send_file(
        handle, mimetype="application/zip", as_attachment=True, download_name=result.zip_path.name, max_age=0
    )
