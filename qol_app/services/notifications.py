"""Reminders and call tasks through the outbox, and sending the outbox at most once per window.

Which reminders (decided from data and ``now`` at each sweep, so downtime cannot double them):

* Questionnaires: ``r1`` when the window opens, ``r2`` two days later if the form is still not
  submitted; a nurse *call task* one day before the window closes.
* Diaries (a one-day window): one reminder per diary day, at ``DIARY_REMINDER_TIME`` local
  (default 09:00); no r2, no call task (a call for every diary day would drown the nurses).
* Only the *newest* reminder due is ever created for a window: after downtime a patient gets
  one catch-up message (r2, not r1 and r2 together); a queued older one is superseded.

**Reminders follow the window, not the row.** Every key carries the window it was planned for
(:func:`window_key`, derived from the timepoint's ``opens_at`` and ``closes_at``), so whatever
moves a timepoint (a corrected cycle date, a schedule amendment, anything that rewrites the
window columns) gets fresh reminders and a fresh call task for its new window without telling
this module. Each sweep first *retires* what no longer fits (:func:`retire_stale`): queued
reminders and open call tasks of a moved, cancelled, not expected or completed timepoint, or of
a patient who died or withdrew, become ``skipped`` with the reason, audited. A skipped row frees
its key (``~void<id>`` is appended), so a timepoint that comes back (a retracted death, a
re-entered event) is planned afresh; a delivered row keeps its key, so no reminder goes out
twice for one window.

``dedupe_key`` is ``tp:{id}:{window}:r{n}:{channel}`` for reminders and ``tp:{id}:{window}:call``
for call tasks, and unique: two schedulers cannot create a message twice. A reminder counts as
existing on any channel (the fallback of a failed SMS is the e-mail of the same step).

**Call tasks are work for nurses.** They are created ``open`` and stay on the site's work list
until a nurse records an outcome (:func:`record_call_outcome`); the scheduler never sends them
and never marks them done. Open tasks whose window has closed stay listed, shown as closed.

**Links.** Each reminder carries its own sign-in link (:mod:`qol_app.services.reminder_links`),
made when the message leaves: the stored body holds :data:`LINK_MARK` in its place, so the
token exists only in the message and as a hash.

**Sending** claims each row with ``UPDATE ... WHERE id = :id AND status = 'queued'`` and
commits the claim before handing the message over: two schedulers never deliver the same row.
A crash mid-delivery leaves it ``sending``; after a lease of 10 minutes it is retried (the one
case where a patient could get a message twice). Outcomes: ``sent`` (accepted by the gateway,
with its message id), ``logged`` (a development backend: logged, not delivered), ``failed``
(with the provider's error; a permanent error at once, a transient one after ``MAX_ATTEMPTS``
with backoff) and ``skipped`` (with the reason). A failed reminder falls back to the patient's
next channel in ``REMINDER_CHANNELS`` at once.

Patient messages respect quiet hours in the patient's local time; call tasks ignore them.
Texts are Jinja templates in ``templates/messages/`` rendered by the ``render`` callable the
caller passes (the scheduler binds it to the app and gettext); this module imports no Flask.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from babel.dates import format_date
from sqlalchemy import String, cast, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from qol_app.db import rowcount
from qol_app.models import OutboxMessage, Patient, Site, StaffUser, Timepoint
from qol_app.models.notifications import CALL_OUTCOMES
from qol_app.notify.channels import Channel, DeliveryError, Outgoing, Receipt
from qol_app.notify.quiet_hours import QuietHours, local_instant, next_allowed, parse_hhmm
from qol_app.scheduling.timewindows import local_date_of, zone
from qol_app.services import audit, reminder_links
from qol_app.services.audit import Actor
from qol_app.services.locks import locked_clause
from qol_app.services.reminder_links import window_key

log = logging.getLogger(__name__)

NO_CONTACT_STATUSES = ("died", "withdrawn")
PATIENT_CHANNELS = ("sms", "email")
LEASE = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 5
STAFF_LANGUAGE = "en"
#: Where a reminder's link goes in a stored body; the real link replaces it when it is sent.
LINK_MARK = "[link]"
VOID = "~void"
SCHEDULER = Actor.system("scheduler")
ENTITY = "outbox_message"
Checkpoint = Callable[[], None]
#: ``render(template, language, context) -> (subject, body)``, e.g. bound to the app's Jinja env.
Renderer = Callable[[str, str, Mapping[str, Any]], tuple[str, str]]


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

    def link_url(self, token: str) -> str:
        return f"{self.base_url.rstrip('/')}/p/r/{token}"


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


def reminder_key(tp_id: int, window: str, n: int, channel: str) -> str:
    return f"tp:{tp_id}:{window}:r{n}:{channel}"


def call_task_key(tp_id: int, window: str) -> str:
    return f"tp:{tp_id}:{window}:call"


def pick_channel(
    email: str | None, phone: str | None, settings: ReminderSettings, *, after: str | None = None
) -> tuple[str, str] | None:
    """The first channel of ``settings.channels`` (after ``after``, for a fallback) with a contact."""
    contacts = {"email": email, "sms": phone}
    order = list(settings.channels)
    if after is not None:
        order = order[order.index(after) + 1 :] if after in order else []
    for channel in order:
        if contacts.get(channel):
            return channel, contacts[channel]  # type: ignore[return-value]
    return None


def _language(language: str | None, settings: ReminderSettings) -> str:
    return language if language in settings.languages else settings.default_language


def _void(column=OutboxMessage.dedupe_key):
    """SQL for a key that steps aside: ``<key>~void<id>`` (unique because the id is)."""
    return column + VOID + cast(OutboxMessage.id, String)


# ---- retiring what no longer fits ------------------------------------------------------------
def _stale_reason(msg_kind: str, msg_window: str | None, tp: Any, patient_status: str, now: dt.datetime) -> str | None:
    """Why a queued reminder or open call task no longer fits its timepoint, or None.

    ``tp`` has ``status``, ``opens_at``, ``closes_at`` and ``completed_at``.
    """
    if patient_status in NO_CONTACT_STATUSES:
        return f"patient {patient_status}"
    if tp.status in ("cancelled", "not_expected"):
        return f"timepoint {tp.status.replace('_', ' ')}"
    if msg_window is not None and msg_window != window_key(tp.opens_at, tp.closes_at):
        return "superseded: the window moved"
    if tp.completed_at is not None or tp.status == "completed":
        return "form completed"
    if msg_kind == "reminder" and (tp.status != "open" or now >= tp.closes_at):
        return f"window closed ({tp.status})"
    return None


def retire_stale(session: Session, now: dt.datetime, *, actor: Actor = SCHEDULER) -> int:
    """Skip (and free the keys of) queued reminders and open call tasks that no longer fit.

    Reads only unsent reminders and open call tasks (a small set) with their timepoints; each
    skip is a conditional UPDATE (so a concurrent sweep skips a row once) and one audit row.
    Returns how many were retired.
    """
    rows = session.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.kind,
            OutboxMessage.status,
            OutboxMessage.window_key,
            OutboxMessage.patient_id,
            Timepoint.status.label("tp_status"),
            Timepoint.opens_at,
            Timepoint.closes_at,
            Timepoint.completed_at,
            Patient.status.label("patient_status"),
            Patient.site_id,
        )
        .join(Timepoint, Timepoint.id == OutboxMessage.timepoint_id)
        .join(Patient, Patient.id == Timepoint.patient_id)
        .where(
            or_(
                (OutboxMessage.kind == "reminder") & (OutboxMessage.status == "queued"),
                (OutboxMessage.kind == "call_task") & (OutboxMessage.status == "open"),
            )
        )
        .order_by(OutboxMessage.id)
    ).all()
    retired = 0
    for row in rows:
        tp = types.SimpleNamespace(
            status=row.tp_status, opens_at=row.opens_at, closes_at=row.closes_at, completed_at=row.completed_at
        )
        why = _stale_reason(row.kind, row.window_key, tp, row.patient_status, now)
        if why is None:
            continue
        if _skip(session, row.id, row.status, why, now):
            retired += 1
            audit.record(
                session,
                actor,
                "message_retired",
                entity_type=ENTITY,
                entity_id=row.id,
                patient_id=row.patient_id,
                site_id=row.site_id,
                old={"status": row.status},
                new={"status": "skipped", "kind": row.kind},
                reason=why,
                now=now,
            )
    return retired


def _skip(session: Session, message_id: int, from_status: str, why: str, now: dt.datetime) -> bool:
    return (
        rowcount(
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.status == from_status)
                .values(status="skipped", last_error=why[:255], sent_at=None, dedupe_key=_void())
                .execution_options(synchronize_session=False)
            )
        )
        == 1
    )


# ---- queueing -------------------------------------------------------------------------------
def _insert_ignoring_duplicates(session: Session, rows: Sequence[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING; returns (id, row) of the rows that were new."""
    if not rows:
        return []
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    inserted = []
    for row in rows:  # one by one (they are few); RETURNING says whether this one was new
        stmt = (
            insert(OutboxMessage)
            .values(**{k: v for k, v in row.items() if not k.startswith("_")})
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(OutboxMessage.id)
        )
        new_id = session.execute(stmt).scalar()
        if new_id is not None:
            inserted.append((new_id, row))
    return inserted


def _existing_keys(session: Session, keys: Iterable[str]) -> set[str]:
    keys = list(keys)
    found: set[str] = set()
    for start in range(0, len(keys), 500):  # IN lists through the unique index, bounded size
        chunk = keys[start : start + 500]
        found.update(session.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(chunk))))
    return found


def _open_rows(session: Session, now: dt.datetime, timepoint_ids: Sequence[int] | None = None) -> list[Any]:
    query = (
        select(
            Timepoint.id,
            Timepoint.key,
            Timepoint.kind,
            Timepoint.opens_at,
            Timepoint.closes_at,
            Timepoint.grace_closes_at,
            Timepoint.window_end,
            Timepoint.patient_id,
            Patient.study_id,
            Patient.site_id,
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
    )
    if timepoint_ids is not None:
        query = query.where(Timepoint.id.in_(list(timepoint_ids)))
    return sorted(session.execute(query).all(), key=lambda r: r.id)


def queue_reminders(
    session: Session, now: dt.datetime, settings: ReminderSettings, render: Renderer
) -> collections.Counter[str]:
    """Retire what no longer fits, then create the reminders and call tasks due at ``now``.

    Idempotent (see module doc). Reads only open timepoints (a small set), then probes the
    outbox by dedupe key. Returns counts: ``reminder``, ``call_task``, ``skipped`` (quiet hours
    outlast the window), ``superseded`` (older queued reminders of the window replaced by a
    newer one) and ``retired`` (see :func:`retire_stale`).
    """
    counts: collections.Counter[str] = collections.Counter()
    counts["retired"] = retire_stale(session, now)
    wanted: dict[str, tuple[str, Any, int, str, str]] = {}
    for row in _open_rows(session, now):
        tz = zone(row.tz)
        window = window_key(row.opens_at, row.closes_at)
        due = newest_due_reminder(row.kind, row.opens_at, row.closes_at, now, tz, settings)
        contact = pick_channel(row.email, row.phone, settings)
        if due is not None and contact is not None:
            wanted[reminder_key(row.id, window, due[0], contact[0])] = ("reminder", row, due[0], contact[0], window)
        if call_task_due(row.kind, row.closes_at, now, settings):
            wanted[call_task_key(row.id, window)] = ("call_task", row, 0, "task", window)
    # A reminder counts as existing on any channel (contact details may have changed since).
    probes = {
        key: [reminder_key(row.id, window, n, c) for c in PATIENT_CHANNELS] if kind == "reminder" else [key]
        for key, (kind, row, n, _channel, window) in wanted.items()
    }
    existing = _existing_keys(session, (k for keys in probes.values() for k in keys))
    new_rows = []
    for key, (kind, row, n, channel, window) in wanted.items():
        if any(k in existing for k in probes[key]):
            continue
        new_rows.append(_message(kind, key, row, n, channel, window, now, settings, render))
        if kind == "reminder" and n > 1:
            older = [reminder_key(row.id, window, m, c) for m in range(1, n) for c in PATIENT_CHANNELS]
            counts["superseded"] += rowcount(
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.dedupe_key.in_(older), OutboxMessage.status == "queued")
                    .values(status="skipped", last_error=f"superseded by r{n}", dedupe_key=_void())
                    .execution_options(synchronize_session=False)
                )
            )
    for message_id, values in _insert_ignoring_duplicates(session, new_rows):
        counts["skipped" if values["status"] == "skipped" else values["kind"]] += 1
        _audit_queued(session, message_id, values, now)
    return +counts


def _audit_queued(session: Session, message_id: int, values: Mapping[str, Any], now: dt.datetime) -> None:
    audit.record(
        session,
        SCHEDULER,
        "message_queued",
        entity_type=ENTITY,
        entity_id=message_id,
        patient_id=values["patient_id"],
        site_id=values.get("_site_id"),
        new={
            k: values.get(k)
            for k in ("kind", "channel", "step", "window_key", "status", "timepoint_id", "fallback_of_id")
            if values.get(k) is not None
        },
        reason=values.get("last_error"),
        now=now,
    )


def _message(kind, key, row, n, channel, window, now, settings, render) -> dict[str, Any]:
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
        "window_key": window,
        "step": "call" if kind == "call_task" else f"r{n}",
    }
    if kind == "call_task":
        # The stored text is the record (in the staff language); the work list shows each
        # nurse the task in her own language from the timepoint itself.
        language = STAFF_LANGUAGE
        subject, body = render(
            "call_task.txt",
            language,
            {"study_id": row.study_id, "key": row.key, "closes": format_date(row.window_end, "long", locale=language)},
        )
        values.update(recipient=None, not_before=None, status="open")
    else:
        language = _language(row.language, settings)
        subject, body, params = _reminder_text(row, n, channel, language, render)
        not_before = next_allowed(now, tz, settings.quiet)
        values.update(
            recipient=row.email if channel == "email" else row.phone,
            not_before=not_before,
            template="reminder",
            params=params,
        )
        if not_before >= row.closes_at:
            values.update(status="skipped", last_error="quiet hours last until the window closes")
    values.update(language=language, subject=subject[:255], body=body, _site_id=row.site_id)
    return values


def _reminder_text(row, n: int, channel: str, language: str, render: Renderer) -> tuple[str, str, dict[str, str]]:
    due = format_date(row.window_end, "long", locale=language)
    subject, body = render(
        f"reminder_{channel}.txt",
        language,
        {"kind": row.kind, "number": n, "due": due, "url": LINK_MARK, "emergency": row.emergency_phone},
    )
    return subject, body, {"due": due, "phone": row.emergency_phone or ""}


def skip_pending_for_patient(session: Session, patient_id: int, reason: str) -> int:
    """Skip every queued message and open call task of a patient (death, withdrawal); returns the count."""
    return rowcount(
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.patient_id == patient_id, OutboxMessage.status.in_(("queued", "open")))
            .values(status="skipped", last_error=reason[:255], dedupe_key=_void())
            .execution_options(synchronize_session=False)
        )
    )


# ---- sending --------------------------------------------------------------------------------
def _recover_interrupted(session: Session, ids: list[int]) -> int:
    return rowcount(
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), OutboxMessage.status == "sending")
            .values(status="queued", sent_at=None, last_error="interrupted while sending; retried")
        )
    )


def _claim(session: Session, message_id: int, now: dt.datetime) -> bool:
    return (
        rowcount(
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.status == "queued")
                .values(status="sending", attempts=OutboxMessage.attempts + 1, sent_at=now)  # sent_at: claim time
                .execution_options(synchronize_session=False)
            )
        )
        == 1
    )


@dataclasses.dataclass(frozen=True)
class _Verdict:
    skip: str | None = None
    defer_until: dt.datetime | None = None
    recipient: str | None = None
    timepoint: Any = None


def _check_still_wanted(session: Session, msg: OutboxMessage, now: dt.datetime, settings: ReminderSettings) -> _Verdict:
    """Re-check at send time: the form may be done, the window closed or moved, the patient gone."""
    if msg.kind != "reminder" or msg.timepoint_id is None:
        return _Verdict(recipient=msg.recipient)
    row = session.execute(
        select(
            Timepoint.id,
            Timepoint.status,
            Timepoint.opens_at,
            Timepoint.closes_at,
            Timepoint.grace_closes_at,
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
    why = _stale_reason(msg.kind, msg.window_key, row, row.patient_status, now)
    if why:
        return _Verdict(skip=why)
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
    return _Verdict(recipient=recipient, timepoint=row)


def send_due(
    session: Session,
    now: dt.datetime,
    channels: Mapping[str, Channel],
    settings: ReminderSettings,
    *,
    render: Renderer | None = None,
    limit: int = 500,
    checkpoint: Checkpoint = lambda: None,
) -> collections.Counter[str]:
    """Deliver queued messages whose ``not_before`` has come; at most once per row.

    ``checkpoint`` must commit (the scheduler passes ``session.commit``): it runs after each
    claim, after a reminder's link is stored (before the message leaves) and after each
    outcome. ``render`` is needed to word a failed reminder's fallback on the next channel
    (without it there is no fallback). Returns counts by outcome (``sent``, ``logged``,
    ``failed``, ``retry``, ``skipped``, ``deferred``, ``fallback``...).
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
    queue = collections.deque(ids)
    while queue:
        message_id = queue.popleft()
        if not _claim(session, message_id, now):
            counts["lost_claim"] += 1
            continue
        checkpoint()  # the claim is visible to every other scheduler before anything is sent
        msg = session.get_one(OutboxMessage, message_id, populate_existing=True)
        outcome = _deliver_one(session, msg, now, channels, settings, checkpoint)
        counts[outcome] += 1
        if outcome == "failed" and render is not None:
            fallback = _fall_back(session, msg, now, settings, render)
            if fallback is not None:
                counts["fallback"] += 1
                if fallback[1] <= now:
                    queue.append(fallback[0])  # the next channel goes out in this same pass
        session.flush()
        checkpoint()
    return +counts


def _deliver_one(session, msg: OutboxMessage, now, channels, settings, checkpoint) -> str:
    verdict = _check_still_wanted(session, msg, now, settings)
    if verdict.skip:
        msg.status, msg.sent_at, msg.last_error = "skipped", None, verdict.skip[:255]
        if msg.kind == "reminder":
            msg.dedupe_key = f"{msg.dedupe_key}{VOID}{msg.id}"
        return "skipped"
    if verdict.defer_until:
        msg.status, msg.sent_at, msg.not_before = "queued", None, verdict.defer_until
        msg.attempts -= 1
        return "deferred"
    body, params = msg.body, dict(msg.params or {})
    # a reminder is always queued for a patient's timepoint (the ids narrow the types only)
    if (
        msg.kind == "reminder"
        and verdict.timepoint is not None
        and msg.patient_id is not None
        and msg.timepoint_id is not None
    ):
        token = reminder_links.issue(
            session,
            patient_id=msg.patient_id,
            timepoint_id=msg.timepoint_id,
            message_id=msg.id,
            window=window_key(verdict.timepoint.opens_at, verdict.timepoint.closes_at),
            expires_at=verdict.timepoint.grace_closes_at,
            now=now,
        )
        checkpoint()  # the link works before the message that carries it leaves
        url = settings.link_url(token)
        body = body.replace(LINK_MARK, url)
        params.update(token=token, link=url)
    channel = channels.get(msg.channel)
    try:
        if channel is None:
            raise DeliveryError(f"no channel {msg.channel!r}", permanent=True)
        receipt = channel.deliver(
            Outgoing(
                msg.dedupe_key,
                msg.channel,
                verdict.recipient,
                msg.subject,
                body,
                msg.language,
                template=msg.template,
                params={k: str(v) for k, v in params.items()},
            )
        )
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
    receipt = receipt or Receipt()
    msg.sent_at, msg.provider_message_id = now, receipt.provider_id
    if verdict.recipient:
        msg.recipient = verdict.recipient
    if not receipt.delivered:
        msg.status, msg.last_error = "logged", "logged, not delivered (development backend)"
        return "logged"
    msg.status, msg.last_error = "sent", None
    return "sent"


def _fall_back(
    session: Session, msg: OutboxMessage, now: dt.datetime, settings: ReminderSettings, render
) -> tuple[int, dt.datetime] | None:
    """Queue the failed reminder again on the patient's next channel: ``(id, not_before)``, or None."""
    if msg.kind != "reminder" or msg.timepoint_id is None or msg.window_key is None or not msg.step:
        return None
    rows = _open_rows(session, now, [msg.timepoint_id])
    if not rows:
        return None
    row = rows[0]
    if window_key(row.opens_at, row.closes_at) != msg.window_key:
        return None
    contact = pick_channel(row.email, row.phone, settings, after=msg.channel)
    if contact is None:
        return None
    n = int(msg.step.lstrip("r"))
    key = reminder_key(row.id, msg.window_key, n, contact[0])
    values = _message("reminder", key, row, n, contact[0], msg.window_key, now, settings, render)
    values["fallback_of_id"] = msg.id
    inserted = _insert_ignoring_duplicates(session, [values])
    for message_id, _values in inserted:
        _audit_queued(session, message_id, values, now)
        if values["status"] == "queued":
            return message_id, values["not_before"]
    return None


# ---- call tasks -----------------------------------------------------------------------------
class CallTaskError(ValueError):
    """An outcome that cannot be recorded (unknown outcome, task already closed)."""


def record_call_outcome(
    session: Session,
    actor: Actor,
    task: OutboxMessage,
    outcome: str,
    *,
    staff_id: int,
    note: str | None,
    now: dt.datetime,
) -> None:
    """Close an open call task with the nurse's outcome (who, when, what), audited.

    ``too_ill`` also records the form's missed reason ``too_ill`` (unless one is set already).
    Only one outcome is kept: a second (another nurse, a double tap) raises
    :class:`CallTaskError`. The caller commits.
    """
    if outcome not in CALL_OUTCOMES:
        raise CallTaskError(f"unknown outcome {outcome!r}")
    if task.kind != "call_task":
        raise CallTaskError("not a call task")
    note = (note or "").strip()[:255] or None
    won = rowcount(
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == task.id, OutboxMessage.status == "open")
            .values(status="done", outcome=outcome, outcome_at=now, outcome_by=staff_id, outcome_note=note)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(task)
    if not won:
        raise CallTaskError("this call task is already closed")
    patient = session.get(Patient, task.patient_id)
    audit.record(
        session,
        actor,
        "call_outcome",
        entity_type=ENTITY,
        entity_id=task.id,
        patient_id=task.patient_id,
        site_id=patient.site_id if patient else None,
        old={"status": "open"},
        new={"status": "done", "outcome": outcome, "note": note, "timepoint_id": task.timepoint_id},
        now=now,
    )
    tp = session.get(Timepoint, task.timepoint_id) if task.timepoint_id else None
    if outcome == "too_ill" and tp is not None and tp.missed_reason is None and tp.completed_at is None:
        tp.missed_reason, tp.missed_reason_by = "too_ill", staff_id
        session.flush()
        audit.record(
            session,
            actor,
            "missed_reason",
            tp,
            patient_id=tp.patient_id,
            site_id=patient.site_id if patient else None,
            new={"missed_reason": "too_ill", "missed_reason_text": None},
            reason="call task: reached, too ill to answer",
            now=now,
        )


# ---- what nurses read ------------------------------------------------------------------------
def patient_messages(session: Session, patient_id: int, *, limit: int = 100) -> list[OutboxMessage]:
    """Messages to the patient (reminders; not staff alerts or call tasks), newest first."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.patient_id == patient_id, OutboxMessage.kind == "reminder")
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
            .limit(limit)
        )
    )


def patient_call_tasks(session: Session, patient_id: int, *, limit: int = 50) -> list[tuple[OutboxMessage, Any]]:
    """The patient's call tasks with the nurse who recorded the outcome, newest first."""
    return [
        (task, by)
        for task, by in session.execute(
            select(OutboxMessage, StaffUser)
            .outerjoin(StaffUser, StaffUser.id == OutboxMessage.outcome_by)
            .where(OutboxMessage.patient_id == patient_id, OutboxMessage.kind == "call_task")
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
            .limit(limit)
        )
    ]


def recent_failures(
    session: Session, scope: Any, now: dt.datetime, *, days: int = 7, limit: int = 50
) -> list[tuple[OutboxMessage, str, str]]:
    """Failed deliveries of the last ``days`` days to patients (or about patients) in ``scope``:
    ``(message, study id, tz)`` rows, newest first."""
    since = now - dt.timedelta(days=days)
    return [
        (msg, study_id, tz)
        for msg, study_id, tz in session.execute(
            select(OutboxMessage, Patient.study_id, func.coalesce(Patient.timezone, Site.timezone))
            .join(Patient, Patient.id == OutboxMessage.patient_id)
            .join(Site, Site.id == Patient.site_id)
            .where(scope, OutboxMessage.status == "failed", OutboxMessage.created_at >= since)
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
            .limit(limit)
        )
    ]


__all__ = [
    "LINK_MARK",
    "CallTaskError",
    "ReminderSettings",
    "Renderer",
    "call_task_due",
    "call_task_key",
    "newest_due_reminder",
    "patient_call_tasks",
    "patient_messages",
    "pick_channel",
    "queue_reminders",
    "recent_failures",
    "record_call_outcome",
    "reminder_key",
    "retire_stale",
    "send_due",
    "skip_pending_for_patient",
    "window_key",
]
