"""Writing forms: who answers, saving pages, submitting exactly once, scoring, staff corrections.

Every function flushes and audits inside the caller's transaction; the request or CLI commits
once. Concurrency rests on the database, not on the web tier: the unique (timepoint,
instrument, revision) constraint lets two devices share one in-progress form, and the
conditional ``UPDATE ... WHERE status = 'in_progress'`` lets exactly one submission win.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qol_app.db import json_object_agg, rowcount
from qol_app.errors import N_, ServiceError
from qol_app.instruments import (
    Instrument,
    LocalizedInstrument,
    Registry,
    get_registry,
    localize,
)
from qol_app.instruments.wording import WordingOverlay as OverlayText
from qol_app.models import Alert, Answer, Patient, Response, Score, StaffUser, Timepoint
from qol_app.models.responses import MODES, RESPONDENTS
from qol_app.scheduling.timewindows import local_date_of, local_day_start, zone
from qol_app.scoring import score_detail
from qol_app.scoring.answers import check_answers
from qol_app.services import audit, protocol, wording
from qol_app.services.alerts import Evaluated
from qol_app.services.audit import Actor

log = logging.getLogger(__name__)

#: Stored statuses under which a timepoint can still be answered (the sweep may lag behind the clock).
DUE_STATUSES = ("scheduled", "open", "overdue")
#: Who a proxy respondent is to the patient (codes stored, labels translated in the UI).
RELATIONSHIPS = ("spouse_partner", "child", "parent", "sibling", "other_relative", "friend", "professional_carer")
SKIPPED = "skipped"


Clock = Callable[[], dt.datetime]


def read_clock(now: dt.datetime | Clock) -> dt.datetime:
    """``now`` itself, or the clock's reading (services are handed a clock to read after a lock)."""
    return now() if callable(now) else now


class PatientInactive(Exception):
    """The patient was recorded as died, withdrawn or lost: they can no longer answer (staff may)."""


def _require_active(session: Session, actor: Actor, patient_id: int) -> None:
    """For the patient's own writes: refuse once the patient is not active.

    Called after the form's row lock, so a status recorded while the request was on its way is
    seen (the status change and this write are serialised by the same locks).
    """
    if actor.type != "patient":
        return
    status = session.scalar(select(Patient.status).where(Patient.id == patient_id))
    if status != "active":
        raise PatientInactive(status)


class AlreadySubmitted(Exception):
    """The form was submitted already (another tap, tab or device won); nothing was changed."""

    def __init__(self, response: Response | None) -> None:
        super().__init__("already submitted")
        self.response = response


# ---------------------------------------------------------------- instruments and wording


def registry(directory: str | None = None) -> Registry:
    """The instrument registry of the configured questionnaire directory (loaded once)."""
    return protocol.current().registry if directory is None else get_registry(directory)


def active_overlay(session: Session, instrument: Instrument, locale: str) -> OverlayText | None:
    """The site's licensed wording for this instrument version and language, if one is active."""
    return wording.active_overlay(
        session, instrument.id, locale, instrument_version=instrument.version, registry=registry()
    )


def localized_many(session: Session, instruments: Sequence[Instrument], locale: str) -> list[LocalizedInstrument]:
    """``localized`` for several instruments with one overlay query."""
    overlays = wording.active_overlays(session, [(i.id, i.version) for i in instruments], locale, registry=registry())
    return [localize(i, locale, overlays[i.id]) for i in instruments]


def localized(session: Session, instrument: Instrument, locale: str) -> LocalizedInstrument:
    """Texts to show: the active overlay, else the shipped labels; never another language.

    Raises ``MissingLanguageError`` (or ``WordingOverlayError`` for a broken overlay).
    """
    return localize(instrument, locale, active_overlay(session, instrument, locale))


# ---------------------------------------------------------------- what to show


def presented_items(instrument: Instrument, patient: Patient) -> tuple[str, ...]:
    """Items this patient is shown: ``ommaya`` items only in arm A, the arm with a reservoir."""
    return tuple(i.id for i in instrument.items if "ommaya" not in i.tags or patient.arm == "A")


@dataclasses.dataclass(frozen=True)
class PagePlan:
    number: int  # 1-based, as in the URL and "page 2 of 6"
    page_id: str
    item_ids: tuple[str, ...]


def page_plan(instrument: Instrument, patient: Patient) -> list[PagePlan]:
    """The instrument's pages as this patient sees them (pages left empty are dropped)."""
    shown = set(presented_items(instrument, patient))
    plans: list[PagePlan] = []
    for page in instrument.pages:
        items = tuple(i for i in page.items if i in shown)
        if items:
            plans.append(PagePlan(len(plans) + 1, page.id, items))
    return plans


def item_number(instrument: Instrument, item_id: str) -> int:
    """The item's position in the instrument (1-based), as the patient's pages number it."""
    return instrument.item_ids.index(item_id) + 1


def paper_number(instrument: Instrument, item_id: str) -> int:
    """The item's number as printed on the paper form (BN20: 31-50), for staff transcribing it."""
    return item_number(instrument, item_id) + instrument.paper_number_offset


def is_due(tp: Timepoint, now: dt.datetime) -> bool:
    """Open for answering now: inside [opens_at, grace_closes_at) and not closed by staff or completion."""
    return tp.status in DUE_STATUSES and tp.opens_at <= now < tp.grace_closes_at


def due_timepoints(session: Session, patient: Patient, now: dt.datetime) -> list[Timepoint]:
    """What the patient should answer now, soonest deadline first."""
    return list(
        session.scalars(
            select(Timepoint)
            .where(
                Timepoint.patient_id == patient.id,
                Timepoint.status.in_(DUE_STATUSES),
                Timepoint.opens_at <= now,
                Timepoint.grace_closes_at > now,
            )
            .order_by(Timepoint.grace_closes_at, Timepoint.id)
        )
    )


def patient_timepoint(session: Session, patient: Patient, timepoint_id: int) -> Timepoint | None:
    """The timepoint only if it is this patient's (anything else looks like it does not exist)."""
    tp = session.get(Timepoint, timepoint_id)
    return tp if tp is not None and tp.patient_id == patient.id else None


@dataclasses.dataclass(frozen=True)
class SurveyRows:
    """A patient's timepoint with one of its forms: what every survey page request starts from."""

    timepoint: Timepoint
    response: Response | None  # revision 0, once started
    texts: LocalizedInstrument
    answered: dict[str, float]  # stored values by item id (explicit skips and unanswered items absent)


#: The timepoint (only the patient's own), its revision-0 form of one instrument with its answers
#: and the digest of the active licensed wording, in one statement: survey pages are the most
#: requested pages.
_SURVEY_QUERY = (
    select(
        Timepoint,
        Response,
        wording.active_digest(bindparam("instrument_id"), bindparam("language"), bindparam("instrument_version")),
        select(json_object_agg(Answer.item_id, Answer.value))
        .where(Answer.response_id == Response.id, Answer.skipped.is_(False))
        .scalar_subquery(),
    )
    .outerjoin(
        Response,
        and_(
            Response.timepoint_id == Timepoint.id,
            Response.revision == 0,
            Response.instrument_id == bindparam("instrument_id"),
        ),
    )
    .where(Timepoint.id == bindparam("timepoint_id"), Timepoint.patient_id == bindparam("patient_id"))
)


def load_survey(session: Session, patient: Patient, timepoint_id: int, instrument: Instrument) -> SurveyRows | None:
    """The patient's timepoint with its form of ``instrument`` and the texts to show in the patient's
    language (as ``localized`` gives them).

    None when the timepoint is not this patient's or does not include the instrument.
    """
    row = session.execute(
        _SURVEY_QUERY,
        {
            "timepoint_id": timepoint_id,
            "patient_id": patient.id,
            "instrument_id": instrument.id,
            "language": patient.language,
            "instrument_version": instrument.version,
        },
    ).first()
    if row is None or instrument.id not in row[0].instruments:
        return None
    texts = localize(instrument, patient.language, wording.overlay_by_digest(session, row[2], registry()))
    return SurveyRows(row[0], row[1], texts, row[3] or {})


def original_response(
    session: Session, timepoint_id: int, instrument_id: str, *, fresh: bool = False
) -> Response | None:
    """Revision 0: the patient's own form (staff corrections are later revisions)."""
    stmt = select(Response).where(
        Response.timepoint_id == timepoint_id, Response.instrument_id == instrument_id, Response.revision == 0
    )
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return session.scalar(stmt)


def answers_of(session: Session, response: Response) -> dict[str, Answer]:
    rows = session.scalars(
        select(Answer)
        .where(Answer.response_id == response.id)
        .order_by(Answer.id)
        .execution_options(populate_existing=True)
    )
    return {row.item_id: row for row in rows}


def typed_value(instrument: Instrument, item_id: str, row: Answer | None) -> int | float | None:
    """A stored answer as the scorer wants it: int codes for choice/vas items, None if skipped."""
    if row is None or row.skipped or row.value is None:
        return None
    return typed_number(instrument, item_id, row.value)


def typed_number(instrument: Instrument, item_id: str, value: float) -> int | float:
    """A stored value as the scorer wants it: an int code for choice/vas items, else a float."""
    return int(value) if instrument.item(item_id).kind in ("choice", "vas") else float(value)


@dataclasses.dataclass(frozen=True)
class VisitPage:
    """One page of a visit: the pages of all the timepoint's unsent forms, numbered through."""

    number: int  # 1-based across the visit ("page 5 of 13")
    instrument_id: str
    page_no: int  # the page's number within its form (as in the URL)
    item_ids: tuple[str, ...]


def visit_pages(session: Session, tp: Timepoint, patient: Patient) -> list[VisitPage]:
    """The visit as the patient answers it: each form not yet sent, its pages in order."""
    reg = registry()
    sent = set(
        session.scalars(
            select(Response.instrument_id).where(
                Response.timepoint_id == tp.id, Response.revision == 0, Response.status == "submitted"
            )
        )
    )
    pages: list[VisitPage] = []
    for instrument_id in tp.instruments:
        if instrument_id in sent:
            continue
        for plan in page_plan(reg.get(instrument_id), patient):
            pages.append(VisitPage(len(pages) + 1, instrument_id, plan.number, plan.item_ids))
    return pages


def visit_page(pages: list[VisitPage], instrument_id: str, page_no: int) -> VisitPage | None:
    return next((p for p in pages if (p.instrument_id, p.page_no) == (instrument_id, page_no)), None)


def resume_point(session: Session, tp: Timepoint, patient: Patient) -> VisitPage | str | None:
    """Where a patient resumes the visit: the first page with an unanswered item, ``"review"``
    once every page is answered (an explicit skip counts), None once every form is sent."""
    pages = visit_pages(session, tp, patient)
    if not pages:
        return None
    stored: dict[str, set[str]] = {}
    for page in pages:
        if page.instrument_id not in stored:
            response = original_response(session, tp.id, page.instrument_id)
            stored[page.instrument_id] = set(answers_of(session, response)) if response is not None else set()
        if any(item_id not in stored[page.instrument_id] for item_id in page.item_ids):
            return page
    return "review"


def next_step(session: Session, tp: Timepoint, patient: Patient) -> tuple[str, int | None] | None:
    """Where a patient resumes: (instrument id, page; ``("", None)`` = the visit's review), None
    when every form of the timepoint is sent."""
    point = resume_point(session, tp, patient)
    if point is None:
        return None
    if point == "review":
        return "", None
    assert isinstance(point, VisitPage)
    return point.instrument_id, point.page_no


# ---------------------------------------------------------------- writing


def set_respondent(
    session: Session, actor: Actor, tp: Timepoint, respondent: str, relationship: str | None, now: dt.datetime
) -> None:
    """Record who answers this timepoint's forms, and carry it to its in-progress forms.

    ``relationship`` (a proxy's, else ignored) is one of :data:`RELATIONSHIPS`; anything else is
    a ValueError.
    """
    if respondent not in RESPONDENTS:
        raise ServiceError(N_("Unknown respondent %(respondent)s."), respondent=respondent)
    if respondent == "proxy":
        if not relationship:
            raise ServiceError(N_("A proxy respondent needs a relationship."))
        if relationship not in RELATIONSHIPS:
            raise ServiceError(N_("Choose the relationship from the list."))
    else:
        relationship = None
    old, new = audit.changes(
        tp,
        ["respondent", "respondent_relationship"],
        {"respondent": respondent, "respondent_relationship": relationship},
    )
    if not new:
        return
    _require_active(session, actor, tp.patient_id)
    tp.respondent, tp.respondent_relationship = respondent, relationship
    for response in session.scalars(
        select(Response).where(Response.timepoint_id == tp.id, Response.status == "in_progress")
    ):
        response.respondent, response.respondent_relationship = respondent, relationship
    audit.record(
        session,
        actor,
        "set_respondent",
        tp,
        patient_id=tp.patient_id,
        site_id=tp.patient.site_id,
        old=old,
        new=new,
        now=now,
    )


def start_response(
    session: Session,
    actor: Actor,
    tp: Timepoint,
    texts: LocalizedInstrument,
    now: dt.datetime,
    *,
    mode: str = "web",
    entered_by: int | None = None,
) -> Response:
    """The timepoint's in-progress (or submitted) revision-0 form, created on first use.

    Two devices starting at once both end up with the same row: the loser of the insert race
    hits the unique constraint inside a savepoint and reads the winner's row.
    """
    existing = original_response(session, tp.id, texts.instrument_id)
    if existing is not None:
        return existing
    response = Response(
        timepoint_id=tp.id,
        patient_id=tp.patient_id,
        instrument_id=texts.instrument_id,
        instrument_version=texts.instrument_version,
        revision=0,
        language=texts.locale,
        wording_version=texts.wording_version[:64],
        respondent=tp.respondent or "self",
        respondent_relationship=tp.respondent_relationship,
        mode=mode,
        status="in_progress",
        started_at=now,
        entered_by=entered_by,
    )
    try:
        with session.begin_nested():
            session.add(response)
    except IntegrityError:
        existing = original_response(session, tp.id, texts.instrument_id, fresh=True)
        if existing is None:  # pragma: no cover - the constraint said it exists
            raise
        return existing
    if tp.started_at is None:
        tp.started_at = now
    audit.record(
        session,
        actor,
        "start_response",
        response,
        patient_id=tp.patient_id,
        site_id=tp.patient.site_id,
        new={
            "instrument": texts.instrument_id,
            "version": texts.instrument_version,
            "language": texts.locale,
            "wording_version": texts.wording_version,
            "mode": mode,
            "respondent": response.respondent,
        },
        now=now,
    )
    return response


_RESPONSES = Response.__table__
_ANSWERS = Answer.__table__
#: Core statements for the page save, the most frequent write (the ORM unit of work costs several
#: times the SQL for these few rows).
_LOCK = (
    update(_RESPONSES)
    .where(_RESPONSES.c.id == bindparam("response_id"), _RESPONSES.c.status == "in_progress")
    .values(status="in_progress")
)
_STORED = select(_ANSWERS.c.id, _ANSWERS.c.item_id, _ANSWERS.c.value, _ANSWERS.c.skipped).where(
    _ANSWERS.c.response_id == bindparam("response_id"), _ANSWERS.c.item_id.in_(bindparam("item_ids", expanding=True))
)
_INSERT_ANSWER = insert(_ANSWERS)
_UPDATE_ANSWER = (
    update(_ANSWERS)
    .where(_ANSWERS.c.id == bindparam("answer_id"))
    .values(value=bindparam("value"), skipped=bindparam("skipped"), answered_at=bindparam("answered_at"))
)


def _lock_in_progress(session: Session, response: Response) -> None:
    """Take the response's row lock, or raise ``AlreadySubmitted`` if it is no longer in progress.

    The no-op UPDATE serialises a page save against a concurrent submit on every backend, so no
    answer can slip into a form after it was submitted.
    """
    if session.connection().execute(_LOCK, {"response_id": response.id}).rowcount == 0:
        session.refresh(response)
        raise AlreadySubmitted(response)


def _shown(value: float | None, skipped: bool) -> int | float | str:
    if skipped or value is None:
        return SKIPPED
    return int(value) if float(value).is_integer() else value


def save_page(
    session: Session,
    actor: Actor,
    response: Response,
    item_ids: Iterable[str],
    answers: Mapping[str, int | float | None],
    now: dt.datetime | Clock,
    *,
    skip: Iterable[str] = (),
    client_time: str | None = None,
    client_offset: int | None = None,
    texts: LocalizedInstrument | None = None,
    alert_source: str = "saved_not_sent",
    presentation: Presentation | None = None,
) -> PageSaved:
    """Store one page's answers; return the items left unanswered (for the gentle reminder) and
    what the alert rules made of the form's stored answers (diaries: evaluated on every save,
    ``alert_source`` telling the nurse where they came from).

    An empty item becomes an explicit skip only when it is in ``skip`` (the patient saw the
    reminder, or the item is optional); otherwise it is left without a row and returned.
    New answers and changes are audited (changes with old and new values). Raises
    ``AlreadySubmitted`` for a form that is no longer in progress (``PatientInactive`` for a
    patient no longer active). ``texts`` is the wording this page was shown in: if the patient
    switched language mid-form, the form records the new one. ``now`` may be a clock (a callable):
    it is then read once the form's row is locked, so answers saved by whoever held the lock are
    never stamped after a submission that waited for it. ``presentation`` (patient pages) is how
    the page was shown and whether read-aloud or a recording was played on it (``Presentation``).
    """
    _lock_in_progress(session, response)
    _require_active(session, actor, response.patient_id)
    now = read_clock(now)
    common: dict[str, Any] = {
        "patient_id": response.patient_id,
        "site_id": response.timepoint.patient.site_id,
        "now": now,
    }
    if texts is not None and (response.language, response.wording_version) != (texts.locale, texts.wording_version):
        old_wording = {"language": response.language, "wording_version": response.wording_version}
        response.language, response.wording_version = texts.locale, texts.wording_version[:64]
        audit.record(
            session,
            actor,
            "change_response_language",
            response,
            old=old_wording,
            new={"language": texts.locale, "wording_version": texts.wording_version},
            **common,
        )
    item_ids, skip = list(item_ids), set(skip)
    wanted: dict[str, tuple[float | None, bool]] = {}
    unanswered: list[str] = []
    for item_id in item_ids:
        value = answers.get(item_id)
        if value is not None:
            wanted[item_id] = (float(value), False)
        elif item_id in skip:
            wanted[item_id] = (None, True)
        else:
            unanswered.append(item_id)
    created, old, new = _write_answers(session, response, wanted, now)
    if client_time or client_offset is not None:
        response.client_time, response.client_utc_offset_minutes = client_time, client_offset
    if created:
        audit.record(session, actor, "save_answers", response, new=created, **common)
    if new:
        audit.record(session, actor, "change_answers", response, old=old, new=new, **common)
    if presentation is not None:
        _record_presentation(session, actor, response, presentation, common)
    alert = None
    if created or new:
        alert = _evaluate_alerts(session, actor, response, now, source=alert_source)
    return PageSaved(unanswered, alert)


@dataclasses.dataclass(frozen=True)
class Presentation:
    """How a patient's page showed a form on one save: the display mode (``default`` or
    ``large_print``) and whether the patient played the read-aloud or a recording on it."""

    display_mode: str
    read_aloud: bool = False
    audio: bool = False

    def __post_init__(self) -> None:
        if self.display_mode not in ("default", "large_print"):
            raise ValueError(f"unknown display mode {self.display_mode!r}")


def note_presentation(
    session: Session, actor: Actor, response: Response, presentation: Presentation, now: dt.datetime
) -> None:
    """Record ``presentation`` on a form without saving answers (Next past an answered item).

    Raises ``AlreadySubmitted`` for a form that is no longer in progress."""
    if _presentation_after(response, presentation) == _presentation_of(response):
        return
    _lock_in_progress(session, response)
    common = {"patient_id": response.patient_id, "site_id": response.timepoint.patient.site_id, "now": now}
    _record_presentation(session, actor, response, presentation, common)


def _presentation_of(response: Response) -> dict[str, Any]:
    return {
        "display_mode": response.display_mode,
        "read_aloud_used": response.read_aloud_used,
        "audio_used": response.audio_used,
    }


def _presentation_after(response: Response, shown: Presentation) -> dict[str, Any]:
    """The form's presentation once ``shown`` is added: ``mixed`` after both display modes; read-aloud
    and recordings count as used once played on any page."""
    mode = response.display_mode
    return {
        "display_mode": shown.display_mode if mode in (None, shown.display_mode) else "mixed",
        "read_aloud_used": bool(response.read_aloud_used) or shown.read_aloud,
        "audio_used": bool(response.audio_used) or shown.audio,
    }


def _record_presentation(
    session: Session, actor: Actor, response: Response, shown: Presentation, common: dict[str, Any]
) -> None:
    """Store what changed of the form's presentation, audited in the same save (``presentation``)."""
    old, new = _presentation_of(response), _presentation_after(response, shown)
    if old == new:
        return
    response.display_mode = new["display_mode"]
    response.read_aloud_used = new["read_aloud_used"]
    response.audio_used = new["audio_used"]
    changed = [name for name in new if old[name] != new[name]]
    audit.record(
        session,
        actor,
        "presentation",
        response,
        old={name: old[name] for name in changed},
        new={name: new[name] for name in changed},
        **common,
    )


@dataclasses.dataclass(frozen=True)
class PageSaved:
    """A saved page: the items left unanswered, and the alert outcome (diaries only)."""

    unanswered: list[str]
    alert: Evaluated | None = None

    @property
    def call_now(self) -> bool:
        """This save made the form's alert red: show the patient the call page next."""
        return self.alert is not None and self.alert.became_red


def _evaluate_alerts(
    session: Session,
    actor: Actor,
    response: Response,
    now: dt.datetime,
    *,
    source: str,
    answers: Mapping[str, int | float | None] | None = None,
) -> Evaluated | None:
    """Run the alert rules over every stored answer of a diary (None for other instruments)."""
    from qol_app.services import alerts

    if response.instrument_id != alerts.rule_set().instrument:
        return None
    if answers is None:
        instrument = registry().get(response.instrument_id)
        answers = {
            item_id: typed_value(instrument, item_id, row) for item_id, row in answers_of(session, response).items()
        }
    return alerts.evaluate_form(session, actor, response, answers, now, source=source)


def _write_answers(
    session: Session, response: Response, wanted: Mapping[str, tuple[float | None, bool]], now: dt.datetime
) -> tuple[dict, dict, dict]:
    """Insert or update answer rows; returns (created, old, new) for the audit trail.

    If another device inserts the same item in the same instant, the inserts' savepoint is rolled
    back and the page is written again over the now-existing rows. Written with Core statements, so
    ``Answer`` objects already loaded in the session are stale afterwards (``answers_of``
    reloads them).
    """
    conn = session.connection()
    for attempt in range(2):
        stored = {
            row.item_id: row for row in conn.execute(_STORED, {"response_id": response.id, "item_ids": list(wanted)})
        }
        created: dict = {}
        old: dict = {}
        new: dict = {}
        inserts: list[dict] = []
        updates: list[dict] = []
        for item_id, (value, skipped) in wanted.items():
            row = stored.get(item_id)
            if row is None:
                inserts.append(
                    {
                        "response_id": response.id,
                        "item_id": item_id,
                        "value": value,
                        "skipped": skipped,
                        "answered_at": now,
                    }
                )
                created[item_id] = _shown(value, skipped)
            elif (row.value, row.skipped) != (value, skipped):
                updates.append({"answer_id": row.id, "value": value, "skipped": skipped, "answered_at": now})
                old[item_id] = _shown(row.value, row.skipped)
                new[item_id] = _shown(value, skipped)
        if inserts:
            try:
                with session.begin_nested():
                    conn.execute(_INSERT_ANSWER, inserts)
            except IntegrityError:
                if attempt:
                    raise
                continue
        if updates:
            conn.execute(_UPDATE_ANSWER, updates)
        return created, old, new
    raise AssertionError("unreachable")  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class Submitted:
    response: Response
    already: bool = False
    alert: Alert | None = None
    timepoint_completed: bool = False


def submit(
    session: Session,
    actor: Actor,
    response: Response,
    patient: Patient,
    now: dt.datetime | Clock,
    *,
    client_time: str | None = None,
    client_offset: int | None = None,
    completed_on: dt.date | None = None,
) -> Submitted:
    """Submit a form once: answers final, scores stored, timepoint completed, diary alerts raised.

    Idempotent: a second call (double tap, stale page, another tab or device) changes nothing and
    returns ``already=True``. Items presented but never answered become explicit skips. A scoring
    failure never blocks the submission: the form is kept and ``scoring_error`` flags it for staff.
    ``now`` may be a clock, read once the form's row is locked (see :func:`save_page`).
    ``PatientInactive`` when the patient submits after being recorded as died, withdrawn or lost.
    """
    tp = session.scalars(select(Timepoint).where(Timepoint.id == response.timepoint_id).with_for_update()).one()
    try:
        _lock_in_progress(session, response)
    except AlreadySubmitted:
        return Submitted(response, already=True)
    _require_active(session, actor, patient.id)
    now = read_clock(now)  # after the lock: a save that held it is never later than the submission
    values: dict = {"status": "submitted", "submitted_at": now, "completed_on": completed_on}
    if client_time or client_offset is not None:
        values.update(client_time=client_time, client_utc_offset_minutes=client_offset)
    won = rowcount(
        session.execute(
            update(Response)
            .where(Response.id == response.id, Response.status == "in_progress")
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(response)
    if not won:  # pragma: no cover - the row lock says it is ours
        return Submitted(response, already=True)
    instrument = registry().get(response.instrument_id)
    stored = answers_of(session, response)
    gaps = {i: (None, True) for i in presented_items(instrument, patient) if i not in stored}
    if gaps:
        _write_answers(session, response, gaps, now)
        stored = answers_of(session, response)
    answers = {item_id: typed_value(instrument, item_id, row) for item_id, row in stored.items()}
    audit.record(
        session,
        actor,
        "submit_response",
        response,
        patient_id=patient.id,
        site_id=patient.site_id,
        new={
            "status": "submitted",
            "answered": sum(v is not None for v in answers.values()),
            "skipped": sum(v is None for v in answers.values()),
        }
        | ({"completed_on": completed_on} if completed_on is not None else {}),
        now=now,
    )
    store_scores(session, response, answers, now)
    completed = _complete_timepoint(session, actor, tp, patient, now)
    source = "sent" if response.mode == "web" else "staff_entry"
    outcome = _evaluate_alerts(session, actor, response, now, source=source, answers=answers)
    alert = outcome.alert if outcome is not None else None
    return Submitted(response, alert=alert, timepoint_completed=completed)


@dataclasses.dataclass(frozen=True)
class VisitSent:
    """The visit's Send: each form submitted by this call, or ``already`` if nothing was left."""

    submitted: list[Submitted]
    already: bool = False

    @property
    def alerts(self) -> list[Alert]:
        return [s.alert for s in self.submitted if s.alert is not None]


def submit_visit(
    session: Session,
    actor: Actor,
    tp: Timepoint,
    patient: Patient,
    now: dt.datetime | Clock,
    *,
    texts_for: Callable[[Instrument], LocalizedInstrument] | None = None,
    client_time: str | None = None,
    client_offset: int | None = None,
) -> VisitSent:
    """Send every form of the visit at once: one Send, one submission per form, in one transaction.

    The timepoint's row lock serialises two Sends (double tap, two tabs, two devices): the second
    finds every form submitted and returns ``already=True``, changing nothing. A form never
    opened is started and sent with every item skipped. Storage stays one response per instrument.
    """
    session.scalar(
        select(Timepoint.id).where(Timepoint.id == tp.id).with_for_update().execution_options(populate_existing=True)
    )
    session.refresh(tp)
    reg = registry()
    done: list[Submitted] = []
    for instrument_id in tp.instruments:
        response = original_response(session, tp.id, instrument_id, fresh=True)
        if response is not None and response.status == "submitted":
            continue
        _require_active(session, actor, patient.id)
        if response is None:
            instrument = reg.get(instrument_id)
            texts = texts_for(instrument) if texts_for else localized(session, instrument, patient.language)
            response = start_response(session, actor, tp, texts, read_clock(now))
        result = submit(session, actor, response, patient, now, client_time=client_time, client_offset=client_offset)
        if not result.already:
            done.append(result)
    return VisitSent(done, already=not done)


def store_scores(
    session: Session, response: Response, answers: Mapping[str, int | float | None], now: dt.datetime
) -> None:
    """Score the form and store one row per scale; on any scoring error flag the form instead."""
    try:
        detail = score_detail(response.instrument_id, answers, version=response.instrument_version, registry=registry())
    except Exception as exc:
        log.exception("scoring failed for response %s", response.id)
        response.scoring_error = f"{type(exc).__name__}: {exc}"[:255]
        return
    response.scoring_error = None
    for code, value in detail.scores.items():
        session.add(
            Score(
                response_id=response.id,
                scale=code,
                value=value,
                n_items=detail.n_answered.get(code),
                scoring_version=detail.scoring_version,
                computed_at=now,
            )
        )
    session.flush()


def completion_instant(response: Response, tz: str) -> dt.datetime | None:
    """When the patient completed the form: the start of ``completed_on`` (patient-local) for a
    paper or interview form, else the server receipt time. Window status and study day use it."""
    if response.completed_on is not None:
        return local_day_start(response.completed_on, zone(tz))
    return response.submitted_at


def _complete_timepoint(session: Session, actor: Actor, tp: Timepoint, patient: Patient, now: dt.datetime) -> bool:
    """Mark the timepoint completed once all its forms are submitted (its row is locked by ``submit``).

    ``completed_at`` is when the patient completed the last form (:func:`completion_instant`)."""
    rows = session.scalars(
        select(Response).where(Response.timepoint_id == tp.id, Response.revision == 0, Response.status == "submitted")
    ).all()
    if tp.status == "completed" or not set(tp.instruments) <= {r.instrument_id for r in rows}:
        return False
    done = max((completion_instant(r, patient.tz) or now for r in rows), default=now)
    old: dict = {"status": tp.status}
    new: dict = {"status": "completed", "completed_at": done}
    if tp.missed_reason == "not_offered":  # entered from paper after all: it was offered
        old["missed_reason"], new["missed_reason"] = tp.missed_reason, None
        tp.missed_reason = None
    tp.status, tp.completed_at, tp.status_changed_at = "completed", done, now
    audit.record(
        session,
        actor,
        "complete_timepoint",
        tp,
        patient_id=patient.id,
        site_id=patient.site_id,
        old=old,
        new=new,
        now=now,
    )
    return True


# ---------------------------------------------------------------- staff


def _staff_actor(staff: StaffUser, actor: Actor | None) -> Actor:
    return actor or Actor("staff", str(staff.id))


def _check_staff(staff: StaffUser, patient: Patient, action: str = "patient.edit") -> None:
    from qol_app.access import can

    if not can(staff, action, patient):
        raise PermissionError(f"{staff.username} may not change forms of patient {patient.study_id}")


def _typed_answers(instrument: Instrument, answers: Mapping[str, int | float | None]) -> dict:
    out = {
        k: (int(v) if v is not None and instrument.item(k).kind != "number" and float(v).is_integer() else v)
        for k, v in answers.items()
    }
    check_answers(instrument, out)
    return out


def correct_response(
    session: Session,
    actor_staff: StaffUser,
    response: Response,
    answers: Mapping[str, int | float | None],
    reason: str,
    now: dt.datetime,
    *,
    actor: Actor | None = None,
) -> Response:
    """A staff correction: a new submitted revision superseding ``response``, which is never edited.

    ``answers`` holds only the items to change (None = explicit skip); all other answers are
    carried over. The new revision is scored and its answers checked by the alert rules (the
    form's one alert is raised or updated, never duplicated). Raises
    ``ValueError`` (not the current submitted revision, no reason, invalid answer) or
    ``PermissionError`` (not the staff member's site).
    """
    patient = session.get_one(Patient, response.patient_id)
    _check_staff(actor_staff, patient, "response.correct")
    if not reason or not reason.strip():
        raise ServiceError(N_("A correction needs a reason."))
    if response.status != "submitted":
        raise ServiceError(N_("Only a submitted form can be corrected."))
    latest = session.scalar(
        select(Response)
        .where(Response.timepoint_id == response.timepoint_id, Response.instrument_id == response.instrument_id)
        .order_by(Response.revision.desc())
        .limit(1)
    )
    if latest is None or latest.id != response.id:
        raise ServiceError(N_("This revision has been superseded; correct the newest one."))
    instrument = registry().get(response.instrument_id)
    changes = _typed_answers(instrument, answers)
    old_rows = answers_of(session, response)
    merged = {item_id: typed_value(instrument, item_id, row) for item_id, row in old_rows.items()} | changes
    revision = Response(
        timepoint_id=response.timepoint_id,
        patient_id=response.patient_id,
        instrument_id=response.instrument_id,
        instrument_version=response.instrument_version,
        revision=response.revision + 1,
        language=response.language,
        wording_version=response.wording_version,
        respondent=response.respondent,
        respondent_relationship=response.respondent_relationship,
        mode=response.mode,
        display_mode=response.display_mode,  # how the patient was shown the form it corrects
        read_aloud_used=response.read_aloud_used,
        audio_used=response.audio_used,
        status="submitted",
        started_at=now,
        submitted_at=now,
        entered_by=actor_staff.id,
        supersedes_id=response.id,
        correction_reason=reason.strip()[:255],
    )
    try:
        with session.begin_nested():
            session.add(revision)
    except IntegrityError:
        raise ServiceError(N_("Someone else corrected this form at the same time; reload and try again.")) from None
    for item_id, value in merged.items():
        session.add(
            Answer(
                response_id=revision.id,
                item_id=item_id,
                value=None if value is None else float(value),
                skipped=value is None,
                answered_at=now,
            )
        )
    session.flush()
    audit.record(
        session,
        _staff_actor(actor_staff, actor),
        "correct_response",
        revision,
        patient_id=patient.id,
        site_id=patient.site_id,
        old={"response": response.id} | {k: _shown(*_pair(old_rows.get(k))) for k in changes},
        new={"response": revision.id} | {k: _shown(v, v is None) for k, v in changes.items()},
        reason=revision.correction_reason,
        now=now,
    )
    store_scores(session, revision, merged, now)
    _evaluate_alerts(session, _staff_actor(actor_staff, actor), revision, now, source="correction", answers=merged)
    return revision


def _pair(row: Answer | None) -> tuple[float | None, bool]:
    return (None, True) if row is None else (row.value, row.skipped)


def enter_on_behalf(
    session: Session,
    actor_staff: StaffUser,
    tp: Timepoint,
    instrument_id: str,
    answers: Mapping[str, int | float | None],
    now: dt.datetime,
    *,
    mode: str,
    respondent: str,
    relationship: str | None = None,
    language: str | None = None,
    actor: Actor | None = None,
    completed_on: dt.date | None = None,
) -> Submitted:
    """Staff enter a paper, interview or site-tablet form as the patient's revision 0 and submit it.

    ``completed_on`` (required for paper and interview forms) is the patient-local date the patient
    completed it: from the window's first day to today. The timepoint's completion (on time or
    late) and the study day come from it; the form's ``submitted_at`` is the transcription time.

    Items not given become explicit skips. An in-progress web form of the patient is taken over
    (its answers overwritten, audited). ``AlreadySubmitted`` if the form was submitted already
    (use ``correct_response``); ``ValueError`` for an unknown mode/respondent/instrument/answer.
    """
    patient = tp.patient
    _check_staff(actor_staff, patient)
    if mode not in MODES or mode == "web":
        raise ServiceError(N_("Unknown mode %(mode)s."), mode=mode)
    if instrument_id not in tp.instruments:
        raise ServiceError(N_("%(instrument)s is not a form of this timepoint."), instrument=instrument_id)
    who = _staff_actor(actor_staff, actor)
    instrument = registry().get(instrument_id)
    typed = _typed_answers(instrument, answers)
    set_respondent(session, who, tp, respondent, relationship, now)
    texts = localized(session, instrument, language or patient.language)
    response = start_response(session, who, tp, texts, now, mode=mode, entered_by=actor_staff.id)
    if response.status == "submitted":
        raise AlreadySubmitted(response)
    completed_on = _check_completed_on(tp, patient, mode, completed_on, now)
    if response.mode != mode or response.entered_by != actor_staff.id:
        audit.record(
            session,
            who,
            "take_over_response",
            response,
            patient_id=patient.id,
            site_id=patient.site_id,
            old={"mode": response.mode, "entered_by": response.entered_by},
            new={"mode": mode, "entered_by": actor_staff.id},
            now=now,
        )
        response.mode, response.entered_by = mode, actor_staff.id
    shown = presented_items(instrument, patient)
    save_page(session, who, response, shown, typed, now, skip=shown, alert_source="staff_entry")
    return submit(session, who, response, patient, now, completed_on=completed_on)


#: Modes where the patient answered before staff typed it in: the completion date is asked.
DATED_MODES = ("paper_transcribed", "interview")


def _check_completed_on(
    tp: Timepoint, patient: Patient, mode: str, completed_on: dt.date | None, now: dt.datetime
) -> dt.date | None:
    if mode not in DATED_MODES:
        return None  # a site tablet is answered as it is entered
    if completed_on is None:
        raise ServiceError(N_("Give the date the patient completed the form."))
    today = local_date_of(now, zone(patient.tz))
    if completed_on > today:
        raise ServiceError(N_("The completion date cannot be in the future."))
    if completed_on < tp.window_start:
        raise ServiceError(
            N_("The completion date is before this form's window opened (%(date)s)."),
            date=tp.window_start.isoformat(),
        )
    return completed_on
