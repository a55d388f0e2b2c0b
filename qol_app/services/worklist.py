"""Today's work list and the missed forms still waiting for a reason (read-only queries).

Order of the list (what a nurse should do first): red alerts, amber alerts, forms due today,
windows closing within 48 hours, overdue forms (still accepted in the grace period), call
tasks (open until a nurse records an outcome; shown as closed once their window closed). A
timepoint appears once, in the first category it fits. Each section
is one query, bounded by ``limit``: the query count never depends on the number of patients.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from qol_app.models import Alert, OutboxMessage, Patient, Site, Timepoint
from qol_app.scheduling.timewindows import local_date_of, zone
from qol_app.services.compliance import effective_status

CLOSING_SOON = dt.timedelta(hours=48)
CATEGORIES = ("red", "amber", "due_today", "closing", "overdue", "call")


@dataclasses.dataclass(frozen=True)
class WorkItem:
    category: str
    patient_id: int
    study_id: str
    tz: str
    when: dt.datetime | None
    timepoint: Timepoint | None = None
    alert: Alert | None = None
    task: OutboxMessage | None = None


@dataclasses.dataclass
class Worklist:
    items: list[WorkItem]
    truncated: bool

    def by_category(self) -> dict[str, list[WorkItem]]:
        out: dict[str, list[WorkItem]] = {c: [] for c in CATEGORIES}
        for item in self.items:
            out[item.category].append(item)
        return out


def _tz_column() -> Any:
    return func.coalesce(Patient.timezone, Site.timezone)


def build(session: Session, scope: ColumnElement[bool], now: dt.datetime, *, limit: int = 200) -> Worklist:
    """The work list for patients matching ``scope`` at ``now`` (three queries)."""
    items: list[WorkItem] = []
    truncated = False

    alerts = session.execute(
        select(Alert, Patient.study_id, _tz_column())
        .join(Patient, Patient.id == Alert.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .where(scope, Alert.acknowledged_at.is_(None))
        .order_by((Alert.level == "red").desc(), Alert.raised_at)
        .limit(limit + 1)
    ).all()
    truncated |= len(alerts) > limit
    for alert, study_id, tz in alerts[:limit]:
        items.append(WorkItem(alert.level, alert.patient_id, study_id, tz, alert.raised_at, alert=alert))

    status = effective_status(now)
    timepoints = session.execute(
        select(Timepoint, Patient.study_id, _tz_column())
        .join(Patient, Patient.id == Timepoint.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .where(
            scope,
            status.in_(("open", "overdue")),
            or_(Timepoint.closes_at <= now + CLOSING_SOON, Timepoint.target_date.in_(_possible_todays(now))),
        )
        .order_by(Timepoint.closes_at, Patient.study_id)
        .limit(limit + 1)
    ).all()
    truncated |= len(timepoints) > limit
    for tp, study_id, tz in timepoints[:limit]:
        category = _timepoint_category(tp, tz, now)
        if category is not None:
            items.append(WorkItem(category, tp.patient_id, study_id, tz, tp.closes_at, timepoint=tp))

    tasks = session.execute(
        select(OutboxMessage, Timepoint, Patient.study_id, _tz_column())
        .join(Patient, Patient.id == OutboxMessage.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .outerjoin(Timepoint, Timepoint.id == OutboxMessage.timepoint_id)
        .where(scope, OutboxMessage.kind == "call_task", OutboxMessage.status == "open")
        .order_by(OutboxMessage.created_at)
        .limit(limit + 1)
    ).all()
    truncated |= len(tasks) > limit
    for task, tp, study_id, tz in tasks[:limit]:
        items.append(WorkItem("call", task.patient_id, study_id, tz, task.created_at, timepoint=tp, task=task))

    rank = {c: i for i, c in enumerate(CATEGORIES)}
    items.sort(key=lambda it: rank[it.category])  # stable: keeps each query's order
    return Worklist(items, truncated)


def _possible_todays(now: dt.datetime) -> list[dt.date]:
    """Every local date ``now`` can be on somewhere (UTC-12 .. UTC+14); Python picks the patient's."""
    day = now.date()
    return [day - dt.timedelta(days=1), day, day + dt.timedelta(days=1)]


def _timepoint_category(tp: Timepoint, tz: str, now: dt.datetime) -> str | None:
    if tp.closes_at <= now:
        return "overdue"
    if tp.target_date == local_date_of(now, zone(tz)):
        return "due_today"
    return "closing" if tp.closes_at - now <= CLOSING_SOON else None


def missing_reasons(
    session: Session, scope: ColumnElement[bool], now: dt.datetime, *, limit: int = 100
) -> tuple[list[tuple[Timepoint, str, str]], int]:
    """Missed or partial forms without a reason: (timepoint, study id, tz) rows, newest first; and the total.

    Listed until a reason is given (CLINICAL.md §3: every missing form needs one).
    """
    status = effective_status(now)
    condition = (scope, status.in_(("missed", "partial")), Timepoint.missed_reason.is_(None))
    total = (
        session.scalar(
            select(func.count())
            .select_from(Timepoint)
            .join(Patient, Patient.id == Timepoint.patient_id)
            .where(*condition)
        )
        or 0
    )
    rows = session.execute(
        select(Timepoint, Patient.study_id, _tz_column())
        .join(Patient, Patient.id == Timepoint.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .where(*condition)
        .order_by(Timepoint.grace_closes_at.desc(), Patient.study_id)
        .limit(limit)
    ).all()
    return [(tp, sid, tz) for tp, sid, tz in rows], total
