"""Record history from the audit trail: per patient, per response, and the admins' search.

Read-only pages. Each event shows who, when, what (action and entity), each field's old and new
value, and the reason. Pages are keyset-paginated (``?before=<event id>``), so page 1,000 of a
long trail costs what page 1 does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from flask import g, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from qol_app import policy
from qol_app.db import db
from qol_app.models import AuditEvent, Response, StaffUser
from qol_app.nurse import bp
from qol_app.nurse.forms import AuditSearchForm
from qol_app.security import staff_required

PAGE = 50
HISTORY = policy.roles_for("history.view")
#: Values never shown to roles without ``patient.identifiable`` (they are not stored for patients anyway).
IDENTIFYING = frozenset({"email", "phone", "address"})

ACTION_LABELS = {
    "enroll": _l("Enrolled"),
    "patient_details": _l("Details changed"),
    "correct_randomization": _l("Randomization corrected"),
    "set_status": _l("Status changed"),
    "set_language": _l("Language changed"),
    "display_preference": _l("Display changed by the patient"),
    "rotate_link": _l("New personal link"),
    "set_pin": _l("PIN changed"),
    "sign_in": _l("Signed in"),
    "sign_out": _l("Signed out"),
    "pin_failed": _l("Wrong PIN"),
    "pin_locked": _l("PIN locked"),
    "record_event": _l("Event recorded"),
    "move_event": _l("Event changed"),
    "delete_event": _l("Event deleted"),
    "create": _l("Form planned"),
    "move": _l("Form moved"),
    "cancel": _l("Form cancelled"),
    "not_expected": _l("Form not expected"),
    "reactivate": _l("Form reactivated"),
    "status": _l("Form status"),
    "missed_reason": _l("Missed-form reason"),
    "start_response": _l("Form started"),
    "save_answers": _l("Answers saved"),
    "change_answers": _l("Answers changed"),
    "presentation": _l("Display and listening recorded"),
    "submit": _l("Form sent"),
    "correct_response": _l("Form corrected"),
    "data_lock": _l("Locked"),
    "data_unlock": _l("Lock released"),
}


@dataclasses.dataclass
class Row:
    event: AuditEvent
    who: str
    changes: list[tuple[str, Any, Any]]


def _who(events: list[AuditEvent], session: Session) -> dict[int, str]:
    ids = {
        int(e.actor_id) for e in events if e.actor_type == "staff" and e.actor_id is not None and e.actor_id.isdigit()
    }
    names = {
        uid: f"{name} ({username})"
        for uid, name, username in session.execute(
            select(StaffUser.id, StaffUser.full_name, StaffUser.username).where(StaffUser.id.in_(ids))
        )
    }
    out = {}
    for e in events:
        if e.actor_type == "staff" and e.actor_id is not None and e.actor_id.isdigit():
            out[e.id] = names.get(int(e.actor_id), f"staff {e.actor_id}")
        elif e.actor_type == "patient":
            out[e.id] = str(_l("the patient"))
        else:
            out[e.id] = f"{e.actor_type}:{e.actor_id}"
    return out


def _show(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def rows_of(events: list[AuditEvent], session: Session, identifiable: bool) -> list[Row]:
    """Events with their actor's name and their field changes (identifying values hidden when needed)."""
    who = _who(events, session)
    out = []
    for e in events:
        old, new = e.old or {}, e.new or {}
        changes = []
        for name in sorted(set(old) | set(new)):
            before, after = old.get(name), new.get(name)
            if name in IDENTIFYING and not identifiable:
                before, after = ("•••" if before else before), ("•••" if after else after)
            changes.append((name, _show(before), _show(after)))
        out.append(Row(e, who[e.id], changes))
    return out


def more_url(before: int) -> str:
    """This page's address (filters kept) continuing after event ``before``."""
    if request.endpoint is None:
        raise RuntimeError("more_url needs a routed request")
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k != "before"}
    return url_for(request.endpoint, **(request.view_args or {}), **args, before=before)


@bp.context_processor
def _history_helpers() -> dict[str, Any]:
    return {"more_url": more_url}


def _page(where: list[ColumnElement[bool]]) -> tuple[list[AuditEvent], int | None]:
    """One page of events, newest first, and the id to continue from (None at the end)."""
    before = request.args.get("before", type=int)
    if before is not None:
        where = [*where, AuditEvent.id < before]
    events = list(db.session.scalars(select(AuditEvent).where(*where).order_by(AuditEvent.id.desc()).limit(PAGE + 1)))
    more = events[PAGE - 1].id if len(events) > PAGE else None
    return events[:PAGE], more


@bp.get("/patients/<int:patient_id>/history")
@staff_required(*HISTORY)
def patient_history(patient_id: int):
    """Everything recorded about one patient: record, events, forms, answers, locks."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "history.view")
    events, more = _page([AuditEvent.patient_id == p.id])
    rows = rows_of(events, db.session, policy.can(g.staff, "patient.identifiable", p))
    return render_template("nurse/history.html", patient=p, response=None, rows=rows, more=more, labels=ACTION_LABELS)


@bp.get("/patients/<int:patient_id>/responses/<int:response_id>/history")
@staff_required(*HISTORY)
def response_history(patient_id: int, response_id: int):
    """One form's history across its revisions (the patient's own and each staff correction)."""
    p = policy.get_patient_or_404(db.session, g.staff, patient_id, "history.view")
    response = policy.get_owned_or_404(db.session, Response, response_id, p)
    revisions = db.session.scalars(
        select(Response.id).where(
            Response.timepoint_id == response.timepoint_id, Response.instrument_id == response.instrument_id
        )
    ).all()
    events, more = _page(
        [
            AuditEvent.patient_id == p.id,
            AuditEvent.entity_type == "responses",
            AuditEvent.entity_id.in_([str(i) for i in revisions]),
        ]
    )
    rows = rows_of(events, db.session, policy.can(g.staff, "patient.identifiable", p))
    return render_template(
        "nurse/history.html", patient=p, response=response, rows=rows, more=more, labels=ACTION_LABELS
    )


def _actor_filter(text: str) -> ColumnElement[bool] | None:
    """``username`` (a staff account) or ``type:id`` (e.g. system:scheduler, patient:12)."""
    text = text.strip()
    if ":" in text:
        kind, _sep, ident = text.partition(":")
        return (AuditEvent.actor_type == kind.strip()) & (AuditEvent.actor_id == ident.strip())
    user_id = db.session.scalar(select(StaffUser.id).where(StaffUser.username == text))
    if user_id is None:
        return None
    return (AuditEvent.actor_type == "staff") & (AuditEvent.actor_id == str(user_id))


@bp.get("/admin/audit")
@staff_required(*policy.roles_for("audit.search"))
def audit_search():
    """The whole audit trail, filtered by entity, actor and date (UTC), newest first."""
    form = AuditSearchForm(request.args)
    where: list[ColumnElement[bool]] = []
    unknown_actor = False
    if request.args and form.validate():
        if form.entity.data:
            where.append(AuditEvent.entity_type == form.entity.data.strip())
        if form.entity_id.data:
            where.append(AuditEvent.entity_id == form.entity_id.data.strip())
        if form.actor.data:
            clause = _actor_filter(form.actor.data)
            unknown_actor = clause is None
            if clause is not None:
                where.append(clause)
        if form.date_from.data:
            where.append(AuditEvent.occurred_at >= _start(form.date_from.data))
        if form.date_to.data:
            where.append(AuditEvent.occurred_at < _start(form.date_to.data + dt.timedelta(days=1)))
    elif request.args and form.errors:
        return render_template("nurse/audit_search.html", form=form, rows=[], more=None, labels=ACTION_LABELS), 400
    if unknown_actor:
        form.actor.errors = [str(_l("No account with this username."))]
        return render_template("nurse/audit_search.html", form=form, rows=[], more=None, labels=ACTION_LABELS), 400
    events, more = _page(where)
    rows = rows_of(events, db.session, True)
    return render_template("nurse/audit_search.html", form=form, rows=rows, more=more, labels=ACTION_LABELS)


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
