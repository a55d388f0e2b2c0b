"""Background export jobs: asked for on the statistician page, run by the scheduler process."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from qol_app.db import Base
from qol_app.models.types import intpk, str16, str64, str255

EXPORT_JOB_STATUSES = ("queued", "running", "done", "failed")


class ExportJob(Base):
    """One requested export. Progress lives in the row, so every web worker can show it."""

    __tablename__ = "export_jobs"
    __table_args__ = (Index("ix_export_jobs_status_requested", "status", "requested_at"),)

    id: Mapped[intpk]
    requested_by: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    requested_at: Mapped[dt.datetime]
    request: Mapped[dict[str, Any]] = mapped_column(doc="export.run.ExportRequest.to_json()")
    status: Mapped[str16] = mapped_column(default="queued", doc="queued, running, done or failed")
    steps_done: Mapped[int] = mapped_column(default=0)
    steps_total: Mapped[int] = mapped_column(default=0)
    stage: Mapped[str64 | None] = mapped_column(doc="What was done last (a dataset or file name)")
    started_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(doc="Last progress report of the running job")
    finished_at: Mapped[dt.datetime | None]
    zip_name: Mapped[str255 | None]
    zip_sha256: Mapped[str64 | None]
    zip_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str255 | None]
    audit_event_id: Mapped[int | None]
