"""Export page, background jobs and downloads (thin: parse the form, check the role, call the
service, render). The export itself runs in the scheduler process (services.exports); the job
page shows its progress, refreshing itself every few seconds (no JavaScript needed)."""

from __future__ import annotations

from pathlib import Path

from flask import abort, current_app, g, redirect, render_template, send_file, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from qol_app import auth
from qol_app.db import db
from qol_app.export.build import ordered_instruments
from qol_app.export.run import ExportRequest, ExportSettings
from qol_app.export.source import ExportFilters
from qol_app.locking import lock_exempt
from qol_app.models import AuditEvent, ExportJob, Site, StaffUser
from qol_app.policy import roles_for
from qol_app.security import current_actor, staff_required
from qol_app.services import audit, exports
from qol_app.services.heartbeat import status as scheduler_status
from qol_app.services.responses import registry
from qol_app.stats import bp
from qol_app.stats.forms import ExportForm, choices
from qol_app.web_messages import message

EXPORTERS = roles_for("export.run")
REFRESH_SECONDS = 2


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
    ids = {
        int(e.actor_id) for e in events if e.actor_type == "staff" and e.actor_id is not None and e.actor_id.isdigit()
    }
    names = dict(db.session.execute(select(StaffUser.id, StaffUser.username).where(StaffUser.id.in_(ids))).all())
    return [
        {
            "at": e.occurred_at,
            "who": names.get(int(e.actor_id), e.actor_id)
            if e.actor_type == "staff" and e.actor_id is not None and e.actor_id.isdigit()
            else f"{e.actor_type}:{e.actor_id}",
            **(e.new or {}),
        }
        for e in events
    ]


def _my_jobs(limit: int = 10) -> list[ExportJob]:
    return list(
        db.session.scalars(
            select(ExportJob).where(ExportJob.requested_by == g.staff.id).order_by(ExportJob.id.desc()).limit(limit)
        )
    )


def _page(form: ExportForm, status: int = 200):
    settings = ExportSettings.from_config(current_app.config)
    return render_template(
        "stats/index.html",
        form=form,
        iso_allowed=settings.iso_dates_allowed,
        recent=_recent_exports(),
        jobs=_my_jobs(),
    ), status


def _job_or_404(job_id: int) -> ExportJob:
    """The staff member's own job (another's is indistinguishable from none)."""
    job = db.session.get(ExportJob, job_id)
    if job is None or job.requested_by != g.staff.id:
        abort(404)
    return job


@bp.get("/")
@staff_required(*EXPORTERS)
def index():
    return _page(_form())


@bp.post("/export")
@staff_required(*EXPORTERS)
@lock_exempt  # reads only (the export is audited; the audit trail is not locked data)
def export():
    """Queue the export with the form's filters and show its progress page."""
    form = _form()
    if not form.validate_on_submit():
        return _page(form, 400)
    now = auth.now()
    if form.as_of_value(now) > now:
        form.as_of.errors = [*form.as_of.errors, _("The as-of time cannot be in the future.")]
        return _page(form, 400)
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
    except ValueError as exc:
        form.as_of.errors = [*form.as_of.errors, message(exc)]
        return _page(form, 400)
    job = exports.request_export(db.session, g.staff.id, wanted, now)
    db.session.commit()
    current_app.logger.info("export job %s queued by staff %s", job.id, g.staff.id)
    return redirect(url_for("stats.job", job_id=job.id), 303)


@bp.get("/jobs/<int:job_id>")
@staff_required(*EXPORTERS)
def job(job_id: int):
    """The job's progress (refreshes itself while it runs), then its download link or error."""
    job = _job_or_404(job_id)
    running = job.status in ("queued", "running")
    stale = int(current_app.config.get("SCHEDULER_STALE_MINUTES") or 30)
    beat = scheduler_status(db.session, auth.now(), stale) if job.status == "queued" else None
    percent = int(100 * job.steps_done / job.steps_total) if job.steps_total else 0
    available = exports.zip_path(Path(current_app.config["EXPORT_DIR"]), job) is not None
    return render_template(
        "stats/job.html",
        job=job,
        running=running,
        percent=percent,
        refresh=REFRESH_SECONDS,
        beat=beat,
        available=available,
    )


@bp.get("/jobs/<int:job_id>/download")
@staff_required(*EXPORTERS)
def download(job_id: int):
    """The finished zip (files + manifest); each download is audited."""
    job = _job_or_404(job_id)
    path = exports.zip_path(Path(current_app.config["EXPORT_DIR"]), job)
    if path is None:
        abort(404)
    audit.record(
        db.session,
        current_actor(),
        "export_download",
        entity_type="export",
        entity_id=job.zip_name,
        new={"job": job.id, "zip_sha256": job.zip_sha256},
        now=auth.now(),
    )
    db.session.commit()
    return send_file(path, mimetype="application/zip", as_attachment=True, download_name=job.zip_name, max_age=0)
