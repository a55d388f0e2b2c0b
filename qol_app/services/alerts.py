"""Symptom alerts from diary answers: raise, notify the site's nurses, acknowledge, escalate.

The rules and their evaluation are pure (``qol_app.alerts``); this module persists the result,
audits it and queues nurse notifications in the outbox (sent by the notification worker after
commit, each at most once thanks to the unique ``dedupe_key``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qol_app.alerts import AlertResult, AlertRuleSet, evaluate, needs_escalation
from qol_app.db import rowcount
from qol_app.errors import N_, ServiceError
from qol_app.models import Alert, OutboxMessage, Patient, Response, SiteMembership, StaffUser
from qol_app.models.alerts import SOURCES
from qol_app.services import audit, protocol
from qol_app.services.audit import Actor


def rule_set() -> AlertRuleSet:
    """The configured alert rules (``ALERT_RULES_FILE``, default the shipped CONQUER file), loaded once."""
    return protocol.current().alert_rules


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """What one evaluation of a form's stored answers did to its alert."""

    alert: Alert | None  # the form's alert, if it has one (new or earlier)
    raised: bool = False  # a new alert was stored by this evaluation
    rose: bool = False  # an existing alert went from amber to red

    @property
    def became_red(self) -> bool:
        """This evaluation made the form's alert red (the patient is shown the call page now)."""
        return self.alert is not None and self.alert.level == "red" and (self.raised or self.rose)


def _form_alert(session: Session, response: Response) -> Alert | None:
    """The alert of the form ``response`` belongs to, whichever of its revisions raised it."""
    return session.scalar(
        select(Alert)
        .join(Response, Response.id == Alert.response_id)
        .where(Response.timepoint_id == response.timepoint_id, Response.instrument_id == response.instrument_id)
        .order_by(Alert.id)
        .limit(1)
        .execution_options(populate_existing=True)
    )


def evaluate_form(
    session: Session,
    actor: Actor,
    response: Response,
    answers: Mapping[str, int | float | None],
    now: dt.datetime,
    *,
    source: str,
) -> Evaluated:
    """Evaluate a diary's stored answers (every saved page, staff entry, correction and Send).

    One alert per form: the first red or amber result stores it (red notifies the site's nurses
    at once); later evaluations only raise its level (amber to red, audited, nurses notified)
    and add newly fired rules, never store a second one or lower it. If an answer that triggered
    it has changed since, the alert stays and ``changed_answers`` records the answers as they
    are now. ``source`` is one of ``models.alerts.SOURCES``. Other instruments: nothing.
    """
    rules = rule_set()
    if response.instrument_id != rules.instrument:
        return Evaluated(None)
    if source not in SOURCES:
        raise ValueError(f"unknown alert source {source!r}")
    result = evaluate(rules, answers)
    alert = _form_alert(session, response)
    patient = session.get_one(Patient, response.patient_id)
    if alert is None:
        if result.level is None:
            return Evaluated(None)
        alert = _store(session, actor, response, patient, result, source, now)
        return Evaluated(alert, raised=True)
    rose = _rise(session, actor, alert, patient, result, now)
    _note_changes(session, actor, alert, patient, answers, now)
    return Evaluated(alert, rose=rose)


def _fired(result: AlertResult) -> list[dict]:
    return [{"id": t.rule_id, "level": t.level, "rules_version": result.rules_version} for t in result.triggered]


def _store(
    session: Session,
    actor: Actor,
    response: Response,
    patient: Patient,
    result: AlertResult,
    source: str,
    now: dt.datetime,
) -> Alert | None:
    alert = Alert(
        patient_id=response.patient_id,
        response_id=response.id,
        level=result.level,
        initial_level=result.level,
        rules=_fired(result),
        triggering_answers=dict(result.answers),
        source=source,
        raised_at=now,
    )
    try:
        with session.begin_nested():
            session.add(alert)
    except IntegrityError:  # the same form raised it on another device in the same instant
        return _form_alert(session, response)
    audit.record(
        session,
        actor,
        "raise_alert",
        alert,
        patient_id=patient.id,
        site_id=patient.site_id,
        new={
            "level": alert.level,
            "rules": [r["id"] for r in alert.rules],
            "answers": alert.triggering_answers,
            "source": source,
        },
        now=now,
    )
    if alert.level == "red":
        notify_nurses(session, alert, patient, now)
    return alert


def _rise(
    session: Session, actor: Actor, alert: Alert, patient: Patient, result: AlertResult, now: dt.datetime
) -> bool:
    """Add newly fired rules and their answers; amber becomes red if a red rule fired (audited)."""
    known = {r["id"] for r in alert.rules}
    added = [r for r in _fired(result) if r["id"] not in known]
    if not added:
        return False
    red = result.level == "red" and alert.level == "amber"
    old: dict[str, Any] = {"level": alert.level, "rules": sorted(known)}
    values: dict = {
        "rules": [*alert.rules, *added],
        "triggering_answers": {**dict(result.answers), **alert.triggering_answers},
    }
    if red:
        values.update(level="red", escalated_at=now)
        if alert.acknowledged_at is not None:  # amber was handled; a red finding must be seen again
            old.update(acknowledged_by=alert.acknowledged_by, action=alert.action_taken)
            values.update(acknowledged_at=None, acknowledged_by=None, action_taken=None)
    won = rowcount(
        session.execute(
            update(Alert)
            .where(Alert.id == alert.id, Alert.level == alert.level)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(alert)
    if not won:  # pragma: no cover - another evaluation of the same form got there first
        return False
    audit.record(
        session,
        actor,
        "raise_alert_level" if red else "add_alert_rules",
        alert,
        patient_id=patient.id,
        site_id=patient.site_id,
        old=old,
        new={"level": alert.level, "rules": sorted(r["id"] for r in alert.rules)},
        now=now,
    )
    if red:
        notify_nurses(session, alert, patient, now)
    return red


def _note_changes(
    session: Session,
    actor: Actor,
    alert: Alert,
    patient: Patient,
    answers: Mapping[str, int | float | None],
    now: dt.datetime,
) -> None:
    """Record the triggering answers that are now different (the alert itself stays as raised)."""
    changed = {
        item_id: ("skipped" if answers.get(item_id) is None else answers[item_id])
        for item_id, value in alert.triggering_answers.items()
        if answers.get(item_id) != value
    }
    if changed == (alert.changed_answers or {}):
        return
    old = alert.changed_answers
    alert.changed_answers = changed or None
    audit.record(
        session,
        actor,
        "alert_answers_changed",
        alert,
        patient_id=patient.id,
        site_id=patient.site_id,
        old={"changed_answers": old},
        new={"changed_answers": alert.changed_answers},
        now=now,
    )
    session.flush()


def site_nurses(session: Session, site_id: int) -> list[StaffUser]:
    """Active nurses with a membership of the site."""
    return list(
        session.scalars(
            select(StaffUser)
            .join(SiteMembership, SiteMembership.user_id == StaffUser.id)
            .where(SiteMembership.site_id == site_id, StaffUser.role == "nurse", StaffUser.active.is_(True))
            .order_by(StaffUser.id)
        )
    )


def notify_nurses(session: Session, alert: Alert, patient: Patient, now: dt.datetime) -> int:
    """Queue one message per nurse and channel (e-mail and SMS, where known), in her language.

    The message names the pseudonymous study id and the level only; clinical details stay in
    the app. Returns how many messages were newly queued (a repeat call queues none).
    """
    queued = 0
    for nurse in site_nurses(session, patient.site_id):
        for channel, recipient in (("email", nurse.email), ("sms", nurse.phone)):
            if not recipient:
                continue
            key = f"alert:{alert.id}:{nurse.id}:{channel}"
            if session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)) is not None:
                continue
            subject, body, level = _message(alert, patient, nurse.language)
            message = OutboxMessage(
                dedupe_key=key,
                kind="alert",
                channel=channel,
                recipient=recipient,
                patient_id=patient.id,
                staff_user_id=nurse.id,
                language=nurse.language or "en",
                subject=subject[:255],
                body=body,
                status="queued",
                created_at=now,
                template="alert",  # the SMS template approved by the provider (see qol_app.notify.sms)
                params={"patient": patient.study_id, "level": level},
            )
            try:
                with session.begin_nested():
                    session.add(message)
            except IntegrityError:  # queued by a concurrent call: that one is enough
                continue
            queued += 1
    return queued


def _message(alert: Alert, patient: Patient, language: str | None) -> tuple[str, str, str]:
    """Subject, body and the level word, in the nurse's own language."""
    base = protocol.current().settings.get("PUBLIC_BASE_URL", "")
    with force_locale(language or "en"):
        if alert.level == "red":
            subject = _("RED symptom alert: patient %(study_id)s", study_id=patient.study_id)
        else:
            subject = _("Amber symptom alert: patient %(study_id)s", study_id=patient.study_id)
        level = _("red") if alert.level == "red" else _("amber")
        body = _(
            "A %(level)s symptom alert was raised for patient %(study_id)s. "
            "Please review and acknowledge it in the app now: %(url)s",
            level=level,
            study_id=patient.study_id,
            url=f"{base.rstrip('/')}/staff/",
        )
    return str(subject), str(body), str(level)


def acknowledge(session: Session, actor: Actor, alert: Alert, staff: StaffUser, action: str, now: dt.datetime) -> bool:
    """Record that ``staff`` handled the alert and what they did; True if this call acknowledged it.

    A second acknowledgement (another nurse, a double tap) changes nothing and returns False.
    Queued notifications not yet sent are skipped. ``PermissionError`` outside the staff
    member's sites; ``ValueError`` without an action.
    """
    from qol_app.access import can

    if not can(staff, "alert.acknowledge", alert):
        raise PermissionError(f"{staff.username} may not acknowledge alerts of this site")
    action = (action or "").strip()
    if not action:
        raise ServiceError(N_("Say what was done."))
    won = rowcount(
        session.execute(
            update(Alert)
            .where(Alert.id == alert.id, Alert.acknowledged_at.is_(None))
            .values(acknowledged_at=now, acknowledged_by=staff.id, action_taken=action[:255])
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(alert)
    if not won:
        return False
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.dedupe_key.like(f"alert:{alert.id}:%"), OutboxMessage.status == "queued")
        .values(status="skipped", last_error="alert acknowledged before sending")
        .execution_options(synchronize_session=False)
    )
    audit.record(
        session,
        actor,
        "acknowledge_alert",
        alert,
        patient_id=alert.patient_id,
        site_id=alert.patient.site_id,
        new={"acknowledged_by": staff.id, "action": alert.action_taken},
        now=now,
    )
    return True


def escalate_overdue(session: Session, now: dt.datetime) -> int:
    """Turn amber alerts unacknowledged for the configured hours into red ones and notify nurses.

    Idempotent and safe to run from several processes: each alert is escalated by a conditional
    UPDATE that only one caller wins. Returns how many alerts this call escalated.
    """
    hours = rule_set().settings.amber_escalation_hours
    candidates = session.scalars(
        select(Alert)
        .where(
            Alert.level == "amber", Alert.acknowledged_at.is_(None), Alert.raised_at <= now - dt.timedelta(hours=hours)
        )
        .order_by(Alert.id)
    ).all()
    actor = Actor.system("scheduler")
    count = 0
    for alert in candidates:
        if not needs_escalation(alert.level, alert.raised_at, alert.acknowledged_at, now, hours):
            continue
        won = rowcount(
            session.execute(
                update(Alert)
                .where(Alert.id == alert.id, Alert.level == "amber", Alert.acknowledged_at.is_(None))
                .values(level="red", escalated_at=now)
                .execution_options(synchronize_session=False)
            )
        )
        if not won:
            continue
        session.refresh(alert)
        patient = alert.patient
        audit.record(
            session,
            actor,
            "escalate_alert",
            alert,
            patient_id=patient.id,
            site_id=patient.site_id,
            old={"level": "amber"},
            new={"level": "red"},
            reason=f"not acknowledged within {hours:g} h",
            now=now,
        )
        notify_nurses(session, alert, patient, now)
        count += 1
    return count
