"""Reminders and call tasks through the outbox, and sending the outbox at most once.

Which reminders (decided from data and ``now`` at each sweep, so downtime cannot double them):

* Questionnaires: ``r1`` when the window opens, ``r2`` two days later if the form is still not
  submitted; a nurse *call task* (channel ``task``) one day before the window closes.
* Diaries (a one-day window): one reminder per diary day, at ``DIARY_REMINDER_TIME`` local
  (default 09:00: early enough that red/amber answers reach nurses in working hours); no r2,
  no call task (a call for every diary day would drown the nurses' list).
* Only the *newest* reminder due is ever created for a timepoint: after downtime a patient
  gets one catch-up message (r2 if r2 is due, not r1 and r2 together), and a queued older
  reminder is marked ``skipped`` as superseded.
* Nothing is created or sent once the window has closed, for a form already submitted, or
  for a patient who died or withdrew (queued ones become ``skipped`` with the reason).
* Patient messages respect quiet hours in the patient's local time (``QUIET_HOURS_START`` to
  ``QUIET_HOURS_END``, default 21:00-08:00): ``not_before`` is the next allowed moment, and a
  reminder that could only go out after its window closes is stored as ``skipped``. Call tasks
  are for staff and ignore quiet hours: "sent" means "on the nurses' list" (the nurse pages
  show ``kind='call_task'`` rows with status ``sent`` while their timepoint is not completed).
* Reminders are per timepoint: a patient with a diary day and a questionnaire open on the same
  day gets two short messages.
* One channel per patient: the first of ``REMINDER_CHANNELS`` (default sms, then email) for
  which the patient has contact details. ``dedupe_key`` is ``tp:{id}:r{n}:{channel}`` (call
  tasks ``tp:{id}:call:task``) and unique, so two schedulers cannot create a message twice.

Sending claims each row with ``UPDATE ... WHERE id = :id AND status = 'queued'`` (rowcount 1
wins) and commits the claim before handing the message over: two schedulers never deliver the
same row. A crash mid-delivery leaves the row ``sending`` (``sent_at`` holds the claim time);
after a lease of 10 minutes it is retried, the one case where a patient could get a message
twice. Transient failures retry with
backoff up to ``MAX_ATTEMPTS``; permanent ones (no address, recipient refused) fail at once.

Texts are Jinja templates in ``templates/messages/`` translated with gettext under
``flask_babel.force_locale(patient.language)``; they never name the illness, and link to
``PUBLIC_BASE_URL + /p/`` while asking the patient to open their personal link (the token is
never put in a message). Rendering needs an app context.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from babel.dates import format_date
from flask import current_app
from flask_babel import force_locale
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from qol_app.models import OutboxMessage, Patient, Site, Timepoint
from qol_app.notify.channels import Channel, DeliveryError, Outgoing
from qol_app.notify.quiet_hours import QuietHours, local_instant, next_allowed, parse_hhmm
from qol_app.scheduling.timewindows import local_date_of, zone
from qol_app.services.locks import locked_clause

log = logging.getLogger(__name__)

NO_CONTACT_STATUSES = ("died", "withdrawn")
PATIENT_CHANNELS = ("sms", "email")
LEASE = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 5
STAFF_LANGUAGE = "en"
Checkpoint = Callable[[], None]


DEFAULT_QUIET_HOURS = QuietHours(dt.time(21, 0), dt.time(8, 0))


@dataclasses.dataclass(frozen=True)
class ReminderSettings:
    """Reminder timing and reach; :meth:`from_config` reads the app config."""

    quiet: QuietHours = DEFAULT_QUIET_HOURS
    channels: tuple[str, ...] = PATIENT_CHANNELS
    second_after: dt.timedelta = dt.timedelta(days=2)
    call_before_close: dt.timedelta = dt.timedelta(days=1)
    diary_time: dt.time = dt.time(9, 0)
    base_url: str = "http://127.0.0.1:5000"
    default_language: str = "en"
    languages: tuple[str, ...] = ("en", "zh_Hans")
    max_attempts: int = MAX_ATTEMPTS

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReminderSettings:
        raw = config.get("REMINDER_CHANNELS") or PATIENT_CHANNELS
        # From the environment (QOL_REMINDER_CHANNELS=email,sms) the value is one string.
        channels = tuple(c.strip() for c in raw.split(",")) if isinstance(raw, str) else tuple(raw)
        unknown = set(channels) - set(PATIENT_CHANNELS)
        if unknown:
            raise ValueError(f"REMINDER_CHANNELS: unknown channel(s) {sorted(unknown)}")
        return cls(
            quiet=QuietHours.parse(config.get("QUIET_HOURS_START", "21:00"), config.get("QUIET_HOURS_END", "08:00")),
            channels=channels,
            diary_time=parse_hhmm(config.get("DIARY_REMINDER_TIME", "09:00")),
            base_url=str(config.get("PUBLIC_BASE_URL") or cls.base_url),
            default_language=str(config.get("BABEL_DEFAULT_LOCALE") or "en"),
            languages=tuple(config.get("LANGUAGES") or cls.languages),
        )


# ---- pure decisions -------------------------------------------------------------------------
def newest_due_reminder(
    kind: str,
    opens_at: dt.datetime,
    closes_at: dt.datetime,
    now: dt.datetime,
    tz,
    settings: ReminderSettings,
) -> tuple[int, dt.datetime] | None:
    """``(n, due_at)`` of the newest patient reminder due at ``now``, or None (see module doc)."""
    if not opens_at <= now < closes_at:
        return None
    if kind == "diary":
        slots = [(1, local_instant(local_date_of(opens_at, tz), settings.diary_time, tz))]
    else:
        slots = [(1, opens_at), (2, opens_at + settings.second_after)]
    due = [(n, at) for n, at in slots if at <= now and at < closes_at]
    return due[-1] if due else None


def call_task_due(kind: str, closes_at: dt.datetime, now: dt.datetime, settings: ReminderSettings) -> bool:
    return kind != "diary" and closes_at - settings.call_before_close <= now < closes_at


def reminder_key(tp_id: int, n: int, channel: str) -> str:
    return f"tp:{tp_id}:r{n}:{channel}"


def call_task_key(tp_id: int) -> str:
    return f"tp:{tp_id}:call:task"


def pick_channel(email: str | None, phone: str | None, settings: ReminderSettings) -> tuple[str, str] | None:
    contacts = {"email": email, "sms": phone}
    for channel in settings.channels:
        if contacts.get(channel):
            return channel, contacts[channel]  # type: ignore[return-value]
    return None


# ---- rendering ------------------------------------------------------------------------------
def render(template: str, language: str, **context: Any) -> tuple[str, str]:
    """``(subject, body)`` of ``templates/messages/<template>`` in ``language`` (also passed to it)."""
    with force_locale(language):
        module = current_app.jinja_env.get_template(f"messages/{template}").make_module(
            {**context, "language": language}
        )
        return str(getattr(module, "subject", "")).strip(), str(module).strip()


def _language(language: str | None, settings: ReminderSettings) -> str:
    return language if language in settings.languages else settings.default_language


# ---- queueing -------------------------------------------------------------------------------
def _insert_ignoring_duplicates(session: Session, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING; returns the rows that were new."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    inserted = []
    for row in rows:  # one by one (they are few); RETURNING says whether this one was new
        stmt = (
            insert(OutboxMessage)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(OutboxMessage.id)
        )
        if session.execute(stmt).first() is not None:
            inserted.append(row)
    return inserted


def _existing_keys(session: Session, keys: Iterable[str]) -> set[str]:
    keys = list(keys)
    found: set[str] = set()
    for start in range(0, len(keys), 500):  # IN lists through the unique index, bounded size
        chunk = keys[start : start + 500]
        found.update(session.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(chunk))))
    return found


def queue_reminders(session: Session, now: dt.datetime, settings: ReminderSettings) -> collections.Counter[str]:
    """Create the reminders and call tasks due at ``now`` (idempotent; see module doc).

    Reads only open timepoints (a small set), then probes the outbox by dedupe key. Returns
    counts: ``reminder``, ``call_task``, ``skipped`` (quiet hours outlast the window) and
    ``superseded`` (older queued reminders replaced by a newer one).
    """
    counts: collections.Counter[str] = collections.Counter()
    rows = session.execute(
        select(
            Timepoint.id,
            Timepoint.key,
            Timepoint.kind,
            Timepoint.opens_at,
            Timepoint.closes_at,
            Timepoint.window_end,
            Timepoint.patient_id,
            Patient.study_id,
            Patient.language,
            Patient.email,
            Patient.phone,
            func.coalesce(Patient.timezone, Site.timezone).label("tz"),
            Site.emergency_phone,
        )
        .join(Patient, Patient.id == Timepoint.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .where(
            Timepoint.status == "open",
            Timepoint.completed_at.is_(None),
            Timepoint.closes_at > now,
            # Implied by closes_at > now, but lets the (status, grace_closes_at) index bound the scan.
            Timepoint.grace_closes_at > now,
            Patient.status.not_in(NO_CONTACT_STATUSES),
            ~locked_clause(now),  # a locked patient's forms are closed: nothing to remind of
        )
    ).all()
    rows.sort(key=lambda r: r.id)
    wanted: dict[str, tuple[str, Any, int, str | None]] = {}
    for row in rows:
        tz = zone(row.tz)
        due = newest_due_reminder(row.kind, row.opens_at, row.closes_at, now, tz, settings)
        contact = pick_channel(row.email, row.phone, settings)
        if due is not None and contact is not None:
            wanted[reminder_key(row.id, due[0], contact[0])] = ("reminder", row, due[0], contact[0])
        if call_task_due(row.kind, row.closes_at, now, settings):
            wanted[call_task_key(row.id)] = ("call_task", row, 0, "task")
    # A reminder counts as existing on any channel (contact details may have changed since).
    probes = {
        key: [reminder_key(row.id, n, c) for c in PATIENT_CHANNELS] if kind == "reminder" else [key]
        for key, (kind, row, n, _channel) in wanted.items()
    }
    existing = _existing_keys(session, (k for keys in probes.values() for k in keys))
    new_rows = []
    for key, (kind, row, n, channel) in wanted.items():
        if any(k in existing for k in probes[key]):
            continue
        new_rows.append(_message(kind, key, row, n, channel, now, settings))
        if kind == "reminder" and n > 1:
            older = [reminder_key(row.id, m, c) for m in range(1, n) for c in PATIENT_CHANNELS]
            counts["superseded"] += session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.dedupe_key.in_(older), OutboxMessage.status == "queued")
                .values(status="skipped", last_error=f"superseded by r{n}")
            ).rowcount
    for values in _insert_ignoring_duplicates(session, new_rows):
        counts["skipped" if values["status"] == "skipped" else values["kind"]] += 1
    return +counts


def _message(kind, key, row, n, channel, now, settings) -> dict[str, Any]:
    tz = zone(row.tz)
    values: dict[str, Any] = {
        "dedupe_key": key,
        "kind": kind,
        "channel": channel,
        "patient_id": row.patient_id,
        "timepoint_id": row.id,
        "created_at": now,
        "status": "queued",
        "attempts": 0,
    }
    if kind == "call_task":
        language = STAFF_LANGUAGE
        subject, body = render(
            "call_task.txt",
            language,
            study_id=row.study_id,
            key=row.key,
            closes=format_date(row.window_end, "long", locale=language),
        )
        values.update(recipient=None, not_before=now)
    else:
        language = _language(row.language, settings)
        subject, body = render(
            f"reminder_{channel}.txt",
            language,
            kind=row.kind,
            number=n,
            due=format_date(row.window_end, "long", locale=language),
            url=settings.base_url.rstrip("/") + "/p/",
            emergency=row.emergency_phone,
        )
        not_before = next_allowed(now, tz, settings.quiet)
        values.update(recipient=row.email if channel == "email" else row.phone, not_before=not_before)
        if not_before >= row.closes_at:
            values.update(status="skipped", last_error="quiet hours last until the window closes")
    values.update(language=language, subject=subject[:255], body=body)
    return values


def skip_pending_for_patient(session: Session, patient_id: int, reason: str) -> int:
    """Mark every queued message to a patient skipped (death, withdrawal); returns the count."""
    return session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.patient_id == patient_id, OutboxMessage.status == "queued")
        .values(status="skipped", last_error=reason[:255])
    ).rowcount


# ---- sending --------------------------------------------------------------------------------
def _recover_interrupted(session: Session, ids: list[int]) -> int:
    return session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == "sending")
        .values(status="queued", sent_at=None, last_error="interrupted while sending; retried")
    ).rowcount


def _claim(session: Session, message_id: int, now: dt.datetime) -> bool:
    return (
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.status == "queued")
            .values(status="sending", attempts=OutboxMessage.attempts + 1, sent_at=now)  # sent_at: claim time
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )


@dataclasses.dataclass(frozen=True)
class _Verdict:
    skip: str | None = None
    defer_until: dt.datetime | None = None
    recipient: str | None = None


def _check_still_wanted(session: Session, msg: OutboxMessage, now: dt.datetime, settings: ReminderSettings) -> _Verdict:
    """Re-check at send time: the form may be done, the window closed, the patient gone."""
    if msg.kind not in ("reminder", "call_task") or msg.timepoint_id is None:
        return _Verdict(recipient=msg.recipient)
    row = session.execute(
        select(
            Timepoint.status,
            Timepoint.closes_at,
            Timepoint.completed_at,
            Patient.status.label("patient_status"),
            Patient.email,
            Patient.phone,
            func.coalesce(Patient.timezone, Site.timezone).label("tz"),
        )
        .join(Patient, Patient.id == Timepoint.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .where(Timepoint.id == msg.timepoint_id)
    ).one()
    if row.patient_status in NO_CONTACT_STATUSES:
        return _Verdict(skip=f"patient {row.patient_status}")
    if row.completed_at is not None or row.status == "completed":
        return _Verdict(skip="form completed")
    if now >= row.closes_at or row.status != "open":
        return _Verdict(skip=f"window closed ({row.status})")
    if msg.kind == "call_task":
        return _Verdict()
    recipient = row.email if msg.channel == "email" else row.phone
    if not recipient:
        return _Verdict(skip=f"no {msg.channel} contact")
    allowed = next_allowed(now, zone(row.tz), settings.quiet)
    if allowed > now:
        return (
            _Verdict(defer_until=allowed)
            if allowed < row.closes_at
            else _Verdict(skip="quiet hours last until the window closes")
        )
    return _Verdict(recipient=recipient)


def send_due(
    session: Session,
    now: dt.datetime,
    channels: Mapping[str, Channel],
    settings: ReminderSettings,
    *,
    limit: int = 500,
    checkpoint: Checkpoint = lambda: None,
) -> collections.Counter[str]:
    """Deliver queued messages whose ``not_before`` has come; at most once per row.

    ``checkpoint`` must commit (the scheduler passes ``session.commit``): it runs after each
    claim, before the message leaves, and after each outcome. Returns counts by outcome.
    """
    counts: collections.Counter[str] = collections.Counter()
    # One pass over the unsent rows finds both the due ones and interrupted deliveries.
    pending = session.execute(
        select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.not_before, OutboxMessage.sent_at)
        .where(OutboxMessage.status.in_(("queued", "sending")))
        .order_by(OutboxMessage.id)
    ).all()
    stale = [r.id for r in pending if r.status == "sending" and r.sent_at is not None and r.sent_at <= now - LEASE]
    if stale:
        counts["recovered"] = _recover_interrupted(session, stale)
    ids = [r.id for r in pending if r.status == "queued" and (r.not_before is None or r.not_before <= now)][:limit]
    ids += stale[: max(0, limit - len(ids))]
    checkpoint()
    for message_id in ids:
        if not _claim(session, message_id, now):
            counts["lost_claim"] += 1
            continue
        checkpoint()  # the claim is visible to every other scheduler before anything is sent
        msg = session.get(OutboxMessage, message_id, populate_existing=True)
        outcome = _deliver_one(session, msg, now, channels, settings)
        counts[outcome] += 1
        session.flush()
        checkpoint()
    return +counts


def _deliver_one(session, msg: OutboxMessage, now, channels, settings) -> str:
    verdict = _check_still_wanted(session, msg, now, settings)
    if verdict.skip:
        msg.status, msg.sent_at, msg.last_error = "skipped", None, verdict.skip[:255]
        return "skipped"
    if verdict.defer_until:
        msg.status, msg.sent_at, msg.not_before = "queued", None, verdict.defer_until
        msg.attempts -= 1
        return "deferred"
    channel = channels.get(msg.channel)
    try:
        if channel is None:
            raise DeliveryError(f"no channel {msg.channel!r}", permanent=True)
        channel.deliver(Outgoing(msg.dedupe_key, msg.channel, verdict.recipient, msg.subject, msg.body, msg.language))
    except Exception as exc:
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        if not isinstance(exc, DeliveryError):
            log.exception("delivering outbox message %s failed", msg.id)
        msg.last_error = f"{type(exc).__name__}: {exc}"[:255]
        msg.sent_at = None
        if permanent or msg.attempts >= settings.max_attempts:
            msg.status = "failed"
            return "failed"
        msg.status = "queued"
        msg.not_before = now + dt.timedelta(minutes=5 * 2 ** (msg.attempts - 1))
        return "retry"
    msg.status, msg.sent_at, msg.last_error = "sent", now, None
    if verdict.recipient:
        msg.recipient = verdict.recipient
    return "sent"


__all__ = [
    "ReminderSettings",
    "call_task_due",
    "newest_due_reminder",
    "pick_channel",
    "queue_reminders",
    "render",
    "send_due",
    "skip_pending_for_patient",
]
