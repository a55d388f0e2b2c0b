"""Background exports: a job row per request, run by the scheduler process, progress in the row.

Why the scheduler process and not a thread in the web worker that took the request: under
gunicorn with several workers the job must survive the worker being recycled (max requests,
timeouts, deploys), its memory peak (hundreds of MB for a large trial, which CPython seldom gives
back) must not stay in a web worker, and two statisticians exporting at once should not run two
exports side by side on a small server. The job row makes the progress visible from every worker
(each page load reads it); the zip is written to the export folder (``EXPORT_DIR``, shared by the
web workers and the scheduler on one host, or shared storage across hosts).

Claiming is a conditional UPDATE (queued -> running), so two runners never take the same job; a
running job whose heartbeat is older than ``STALE_AFTER`` (its process died) is marked failed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from qol_app.db import rowcount
from qol_app.export.manifest import sha256_file
from qol_app.export.run import ExportRequest, ExportSettings, Progress, count_steps, write_export
from qol_app.instruments import Registry
from qol_app.models import ExportJob
from qol_app.services import audit, locks
from qol_app.services.audit import Actor

log = logging.getLogger(__name__)

STALE_AFTER = dt.timedelta(minutes=15)
KEEP_FOR = dt.timedelta(days=7)


DEFAULT_SETTINGS = ExportSettings()


@dataclasses.dataclass(frozen=True)
class ExportResult:
    zip_path: Path
    manifest: dict[str, Any]
    audit_event_id: int
    files_dir: Path | None = None


def run_export(
    session: Session,
    request: ExportRequest,
    out_dir: Path,
    *,
    actor: Actor,
    now: dt.datetime,
    settings: ExportSettings = DEFAULT_SETTINGS,
    registry: Registry | None = None,
    progress: Progress | None = None,
    keep_files: bool = False,
) -> ExportResult:
    """Write ``<out_dir>/<stem>.zip`` (``export.run.write_export``) with the data lock and audit
    chain head at the as-of time in its manifest, and audit it; returns where and what.

    Raises ValueError for an as-of time in the future, PermissionError when ISO dates are asked for
    but not enabled by an admin.
    """
    written = write_export(
        session,
        request,
        out_dir,
        now=now,
        data_lock=locks.describe(session, request.as_of),
        audit_head=audit.head_at(session, request.as_of),
        settings=settings,
        registry=registry,
        progress=progress,
        keep_files=keep_files,
    )
    manifest = written.manifest
    event = audit.record(
        session,
        actor,
        "export",
        entity_type="export",
        entity_id=request.stem,
        new={
            "as_of": request.as_of,
            "filters": request.filters.describe(),
            "options": manifest["options"],
            "files": {f["name"]: f["sha256"] for f in manifest["files"]},
            "zip": written.zip_path.name,
            "zip_sha256": sha256_file(written.zip_path),
        },
        now=now,
    )
    return ExportResult(written.zip_path, manifest, event.id, written.files_dir)


def request_export(session: Session, staff_id: int, request: ExportRequest, now: dt.datetime) -> ExportJob:
    """Queue an export for ``staff_id``; the caller commits. The scheduler process runs it."""
    job = ExportJob(
        requested_by=staff_id,
        requested_at=now,
        request=request.to_json(),
        status="queued",
        steps_done=0,
        steps_total=count_steps(request),
    )
    session.add(job)
    session.flush()
    return job


def job_folder(export_dir: Path, job: ExportJob) -> Path:
    return Path(export_dir) / f"job-{job.id}"


def zip_path(export_dir: Path, job: ExportJob) -> Path | None:
    """The finished zip of ``job``, if it is done and the file is still there."""
    if job.status != "done" or not job.zip_name:
        return None
    path = job_folder(export_dir, job) / job.zip_name
    return path if path.is_file() else None


def mark_stale(session: Session, now: dt.datetime) -> int:
    """Fail running jobs that stopped reporting (their process ended); returns how many."""
    result = session.execute(
        update(ExportJob)
        .where(ExportJob.status == "running", ExportJob.heartbeat_at < now - STALE_AFTER)
        .values(status="failed", finished_at=now, error="interrupted: the export process stopped")
    )
    return rowcount(result) or 0


def claim_next(session: Session, now: dt.datetime) -> ExportJob | None:
    """Take the oldest queued job (queued -> running) or None; safe with several runners."""
    while True:
        job_id = session.scalar(
            select(ExportJob.id).where(ExportJob.status == "queued").order_by(ExportJob.requested_at, ExportJob.id)
        )
        if job_id is None:
            return None
        claimed = session.execute(
            update(ExportJob)
            .where(ExportJob.id == job_id, ExportJob.status == "queued")
            .values(status="running", started_at=now, heartbeat_at=now)
        )
        if rowcount(claimed):
            session.flush()
            job = session.get(ExportJob, job_id)
            session.refresh(job)
            return job


def run_job(
    session: Session,
    job: ExportJob,
    export_dir: Path,
    *,
    settings: ExportSettings,
    registry: Registry,
    clock: Callable[[], dt.datetime],
) -> ExportJob:
    """Run a claimed job: the export (audited as the staff member who asked), progress committed
    after each step, the zip in the job's folder. A failure is recorded in the row, never raised."""
    job_id = job.id
    folder = job_folder(export_dir, job)
    shutil.rmtree(folder, ignore_errors=True)

    def progress(done: int, total: int, what: str) -> None:
        job.steps_done, job.steps_total, job.stage, job.heartbeat_at = done, total, what[:64], clock()
        session.commit()

    try:
        request = ExportRequest.from_json(job.request)
        session.commit()  # the claim is visible before the long read starts
        result = run_export(
            session,
            request,
            folder,
            actor=Actor("staff", str(job.requested_by)),
            now=clock(),
            settings=settings,
            registry=registry,
            progress=progress,
        )
    except Exception as exc:  # the job fails, the runner goes on
        session.rollback()
        if not isinstance(exc, ValueError | PermissionError):
            log.exception("export job %s failed", job_id)
        failed = session.get(ExportJob, job_id)
        assert failed is not None
        failed.status, failed.finished_at = "failed", clock()
        failed.error = (str(exc) if isinstance(exc, ValueError | PermissionError) else type(exc).__name__)[:255]
        session.commit()
        shutil.rmtree(folder, ignore_errors=True)
        return failed
    job.status, job.finished_at = "done", clock()
    job.steps_done = job.steps_total
    job.zip_name = result.zip_path.name
    job.zip_sha256 = sha256_file(result.zip_path)
    job.zip_bytes = result.zip_path.stat().st_size
    job.audit_event_id = result.audit_event_id
    session.commit()
    return job


def run_pending(
    session: Session,
    export_dir: Path,
    *,
    settings: ExportSettings,
    registry: Registry,
    clock: Callable[[], dt.datetime],
    limit: int = 10,
) -> int:
    """Fail stale jobs, then run queued ones (oldest first, one at a time); returns how many ran."""
    mark_stale(session, clock())
    session.commit()
    ran = 0
    while ran < limit:
        job = claim_next(session, clock())
        if job is None:
            break
        run_job(session, job, export_dir, settings=settings, registry=registry, clock=clock)
        ran += 1
    return ran


def remove_old(session: Session, export_dir: Path, now: dt.datetime) -> int:
    """Delete the zips of jobs finished more than ``KEEP_FOR`` ago (the rows and audit stay)."""
    old = session.scalars(select(ExportJob).where(ExportJob.finished_at < now - KEEP_FOR)).all()
    removed = 0
    for job in old:
        folder = job_folder(export_dir, job)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
