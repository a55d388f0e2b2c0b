"""Symptom alerts from diary answers: raise, notify the site's nurses, acknowledge, escalate.

The rules and their evaluation are pure (``qol_app.alerts``); this module persists the result,
audits it and queues nurse notifications in the outbox (sent by the notification worker after
commit, each at most once thanks to the unique ``dedupe_key``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qol_app.alerts import AlertRuleSet, evaluate, needs_escalation
from qol_app.errors import N_, ServiceError
from qol_app.models import Alert, OutboxMessage, Patient, Response, SiteMembership, StaffUser
from qol_app.services import audit, protocol
from qol_app.services.audit import Actor


def rule_set() -> AlertRuleSet:
    """The configured alert rules (``ALERT_RULES_FILE``, default the shipped CONQUER file), loaded once."""
    return protocol.current().alert_rules


def raise_for_response(
    session: Session, actor: Actor, response: Response, answers: Mapping[str, int | float | None], now: dt.datetime
) -> Alert | None:
    """Evaluate a submitted diary; store an alert (red or amber) with the triggering answers.

    Red alerts notify the site's nurses at once; amber ones wait on the nurses' list and escalate
    if nobody acknowledges them in time (``escalate_overdue``). Other instruments: None.
    """
    rules = rule_set()
    if response.instrument_id != rules.instrument:
        return None
    result = evaluate(rules, answers)
    if result.level is None:
        return None
    alert = Alert(
        patient_id=response.patient_id,
        response_id=response.id,
        level=result.level,
        initial_level=result.level,
        rules=[{"id": t.rule_id, "level": t.level, "rules_version": result.rules_version} for t in result.triggered],
        triggering_answers=dict(result.answers),
        raised_at=now,
    )
    session.add(alert)
    session.flush()
    patient = session.get(Patient, response.patient_id)
    audit.record(
        session,
        actor,
        "raise_alert",
        alert,
        patient_id=patient.id,
        site_id=patient.site_id,
        new={"level": alert.level, "rules": [r["id"] for r in alert.rules], "answers": alert.triggering_answers},
        now=now,
    )
    if alert.level == "red":
        notify_nurses(session, alert, patient, now)
    return alert


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
    won = session.execute(
        update(Alert)
        .where(Alert.id == alert.id, Alert.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by=staff.id, action_taken=action[:255])
        .execution_options(synchronize_session=False)
    ).rowcount
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
        won = session.execute(
            update(Alert)
            .where(Alert.id == alert.id, Alert.level == "amber", Alert.acknowledged_at.is_(None))
            .values(level="red", escalated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
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
