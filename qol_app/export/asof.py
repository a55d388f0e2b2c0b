"""What the data looked like at the as-of time: the one place that decides it.

``source`` reads stored rows as they are now, without any time condition; the functions here
turn them into the facts of the as-of time, and nothing else in the export repeats these rules
(CLINICAL.md §3 statuses):
- a patient counts once enrolled (created) by ``as_of``; death, withdrawal or loss only from its
  recorded date, if that date is on or before the as-of date (in the patient's time zone);
- a timepoint counts once created by ``as_of``, unless it was cancelled by then;
- its not-expected reason counts once recorded (its status change) by then;
- a response counts once started by then; the current revision is the newest submitted by then
  (staff corrections supersede the patient's revision 0), else the unfinished revision 0;
- an answer of an unfinished form counts once saved by then;
- a form's status follows the clock at ``as_of`` (``scheduling.status.derive_status``):
  ``partial`` / ``missed`` after the grace period, ``pending`` while the window or its grace
  period runs, and forms not yet open are left out;
- an event counts once recorded and until deleted, on the date (and with the cycle length) it had
  then; an alert once raised, its escalation and acknowledgement once they happened.

- a patient's arm, randomization date, time zone and language are the ones of then (a correction
  recorded later is rewound through the value it replaced);
- a patient's status is the last one recorded by then (the status history, with the time each
  was recorded): a death recorded later, or a correction recorded later, is not known yet;
- a timepoint's missed reason and not-expected reason are the last recorded by then (the audit
  trail records each change with its time): a reason entered later is not known yet (the form
  then carries ``not_recorded``), and a reactivation recorded later leaves it not expected;
- a timepoint's planned fields (dates, window instants, instruments, anchor) and its status are
  the ones it had then: a later move (a corrected event or randomization date, an amendment, a
  time zone correction), cancellation or reactivation is rewound through the value each later
  change replaced (the audit trail records it), so the timepoint keeps its dates of that time,
  and it is listed and filtered by its target date of that time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, overload
from zoneinfo import ZoneInfo

from qol_app.scheduling import forms
from qol_app.scheduling.forms import current_revision

#: Form statuses in exports: CLINICAL.md §3 plus ``pending`` (not decided yet at the as-of time).
FORM_STATUSES = ("completed", "partial", "missed", "not_expected", "pending")


# ---------------------------------------------------------------- stored rows (from source)


@dataclasses.dataclass(frozen=True, slots=True)
class PatientRow:
    pk: int
    study_id: str
    site: str
    arm: str
    randomization_date: dt.date
    tz: str
    language: str
    status: str
    status_date: dt.date | None
    created_at: dt.datetime
    site_tz: str | None = None  # the site's zone (``tz`` when the patient has none of their own)


#: Patient fields a correction changes (``correct_randomization``, ``patient_details``): rewound to
#: their value at the as-of time. ``timezone`` None is the site's zone.
PATIENT_REWOUND_FIELDS = ("arm", "randomization_date", "timezone", "language")


@dataclasses.dataclass(frozen=True, slots=True)
class TimepointRow:
    pk: int
    patient_pk: int
    key: str
    rule_id: str
    kind: str
    instruments: tuple[str, ...]
    anchor_kind: str
    anchor_number: int | None
    anchor_date: dt.date
    target_date: dt.date
    window_start: dt.date
    window_end: dt.date
    opens_at: dt.datetime
    closes_at: dt.datetime
    grace_closes_at: dt.datetime
    missed_reason: str | None
    not_expected_reason: str | None
    status: str
    status_changed_at: dt.datetime | None
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class ResponseRow:
    pk: int
    timepoint_pk: int
    instrument_id: str
    instrument_version: str
    revision: int
    language: str
    respondent: str
    relationship: str | None
    mode: str
    status: str
    started_at: dt.datetime
    submitted_at: dt.datetime | None
    entered_by: int | None = None
    completed_on: dt.date | None = None  # paper/interview: the date the patient completed it
    display_mode: str | None = None  # how the patient's pages showed it (default, large_print, mixed)
    read_aloud_used: bool | None = None
    audio_used: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class EventRow:
    patient_pk: int
    kind: str
    number: int | None
    date: dt.date
    cycle_length_days: int | None
    created_at: dt.datetime
    deleted_at: dt.datetime | None
    pk: int = 0


#: Event fields a correction changes (``move_event``): rewound to their value at the as-of time.
EVENT_REWOUND_FIELDS = ("date", "cycle_length_days")


@dataclasses.dataclass(frozen=True, slots=True)
class StatusRow:
    """A recorded patient status (``PatientStatusChange``)."""

    status: str
    status_date: dt.date | None
    recorded_at: dt.datetime


#: Timepoint fields whose recorded changes (audit trail) decide their value at the as-of time:
#: the value last recorded by then.
HISTORY_FIELDS = ("missed_reason", "not_expected_reason")
#: Timepoint fields rewound to the value they had at the as-of time: a change recorded later is
#: undone through the value it replaced (``ChangeRow.before``; every move and status change records it).
REWOUND_FIELDS = (
    "rule_id",
    "kind",
    "instruments",
    "anchor_kind",
    "anchor_number",
    "anchor_date",
    "target_date",
    "window_start",
    "window_end",
    "opens_at",
    "closes_at",
    "grace_closes_at",
    "status",
)


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeRow:
    """A recorded change of one timepoint field: when, which field, the new value and the value it
    replaced (typed as the column: dates, aware UTC instants, a tuple of instruments)."""

    at: dt.datetime
    field: str
    value: Any
    before: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class AlertRow:
    patient_pk: int
    level: str
    initial_level: str
    rules: tuple[str, ...]
    raised_at: dt.datetime
    escalated_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    timepoint_key: str | None
    instrument_id: str | None


# ---------------------------------------------------------------- facts at the as-of time


@dataclasses.dataclass(frozen=True, slots=True)
class PatientFacts:
    """A patient as of the as-of time. ``pk`` is internal and never exported."""

    pk: int
    study_id: str
    site: str
    arm: str
    randomization_date: dt.date
    tz: str
    language: str
    status: str = "active"
    status_date: dt.date | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TimepointFacts:
    """One expected form set; ``in_range`` is False for a baseline loaded only as a reference."""

    pk: int
    key: str
    rule_id: str
    kind: str
    instruments: tuple[str, ...]
    anchor_kind: str
    anchor_number: int | None
    anchor_date: dt.date
    target_date: dt.date
    window_start: dt.date
    window_end: dt.date
    opens_at: dt.datetime
    closes_at: dt.datetime
    grace_closes_at: dt.datetime
    missed_reason: str | None = None
    not_expected_reason: str | None = None
    in_range: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Correction:
    """A staff correction submitted by the as-of time (for provenance): revision, when, by whom."""

    revision: int
    submitted_at: dt.datetime
    entered_by: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class ResponseFacts:
    """The current revision of a form as of the as-of time (or the unfinished revision 0).

    ``first_submitted_at`` is when the patient's (revision 0) form arrived: completion time and
    on-time/late are about it, not about a later staff correction.
    """

    pk: int
    instrument_version: str
    revision: int
    language: str
    respondent: str
    relationship: str | None
    mode: str
    submitted: bool
    started_at: dt.datetime
    first_submitted_at: dt.datetime | None
    corrections: tuple[Correction, ...] = ()
    #: Paper or interview form: the patient-local date the patient completed it (window, study day).
    completed_on: dt.date | None = None
    #: How the patient's pages showed it, and whether read-aloud or a recording was played.
    display_mode: str | None = None
    read_aloud_used: bool | None = None
    audio_used: bool | None = None


@dataclasses.dataclass(slots=True)
class Form:
    """One expected (timepoint, instrument) with its as-of status and current response."""

    patient: PatientFacts
    timepoint: TimepointFacts
    instrument_id: str
    status: str
    response: ResponseFacts | None = None
    received: bool = False

    @property
    def missing_reason(self) -> str | None:
        """Code only (never free text): not-expected reason, or the nurse's missed reason
        (``not_recorded`` while none was given; ``scheduling.forms.reason_code``)."""
        return forms.reason_code(self.status, self.timepoint.missed_reason, self.timepoint.not_expected_reason)


@dataclasses.dataclass(frozen=True, slots=True)
class EventFacts:
    """A treatment or clinical event on its actual date."""

    kind: str
    number: int | None
    date: dt.date
    cycle_length_days: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AlertFacts:
    """An alert as of the as-of time; ``seq`` numbers the patient's alerts by time raised."""

    patient: PatientFacts
    seq: int
    level: str
    initial_level: str
    rules: tuple[str, ...]
    raised_at: dt.datetime
    escalated: bool
    acknowledged_at: dt.datetime | None
    timepoint_key: str | None
    instrument_id: str | None


# ---------------------------------------------------------------- the rules


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@overload
def local_day(instant: dt.datetime, tz: str) -> dt.date: ...
@overload
def local_day(instant: None, tz: str) -> None: ...
@overload
def local_day(instant: dt.datetime | None, tz: str) -> dt.date | None: ...
def local_day(instant: dt.datetime | None, tz: str) -> dt.date | None:
    """The patient's local calendar date of an instant."""
    return None if instant is None else instant.astimezone(zone(tz)).date()


def known(made_at: dt.datetime | None, as_of: dt.datetime) -> bool:
    """Was something made (created, started, saved, raised, recorded) at or before ``as_of``?"""
    return made_at is not None and made_at <= as_of


def patient_at(
    row: PatientRow,
    as_of: dt.datetime,
    history: Sequence[StatusRow] = (),
    changes: Sequence[ChangeRow] = (),
) -> PatientFacts | None:
    """The patient at ``as_of``; None if not enrolled by then. With a status ``history``, the
    status is the last one recorded by ``as_of`` (active before any); without one (rows older than
    the history), the stored status. Arm, randomization date, time zone and language are the ones
    of then: a correction recorded later (``changes``, in the order recorded) is rewound."""
    if not known(row.created_at, as_of):
        return None
    then = _rewind(changes, PATIENT_REWOUND_FIELDS, as_of)
    if "timezone" in then:
        then["tz"] = then.pop("timezone") or row.site_tz or row.tz
    if then:
        row = dataclasses.replace(row, **then)
    current, current_date = row.status, row.status_date
    if history:
        recorded = [h for h in history if known(h.recorded_at, as_of)]
        current, current_date = (recorded[-1].status, recorded[-1].status_date) if recorded else ("active", None)
    status, status_date = patient_status_at(current, current_date, local_day(as_of, row.tz))
    return PatientFacts(
        row.pk, row.study_id, row.site, row.arm, row.randomization_date, row.tz, row.language, status, status_date
    )


def _rewind(history: Iterable[ChangeRow], fields: Sequence[str], as_of: dt.datetime) -> dict[str, Any]:
    """Each of ``fields`` changed after ``as_of``, with the value it had then: the value the first
    later change replaced (``history`` in the order recorded)."""
    then: dict[str, Any] = {}
    for change in history:
        if change.field in fields and change.field not in then and not known(change.at, as_of):
            then[change.field] = change.before
    return then


def patient_status_at(status: str, status_date: dt.date | None, as_of_day: dt.date) -> tuple[str, dt.date | None]:
    """Death, withdrawal or loss count only from their date on (a later date is not known yet)."""
    if status != "active" and status_date is not None and status_date <= as_of_day:
        return status, status_date
    return "active", None


def timepoint_at(
    row: TimepointRow, as_of: dt.datetime, *, in_range: bool = True, history: Sequence[ChangeRow] = ()
) -> TimepointFacts | None:
    """The timepoint at ``as_of``; None when it did not exist yet or was cancelled by then.

    Its planned fields and status are the ones it had at ``as_of`` (:func:`rewound`); its missed
    reason and not-expected reason the ones recorded by ``as_of`` (the last recorded change of each
    in ``history``); a field without any recorded change keeps the stored value (the reason) or the
    rule of :func:`not_expected_at`."""
    if row.created_at > as_of:
        return None
    then = rewound(row, history, as_of)
    if "status" in then:  # changed later: its value then decides (a status then was recorded by then)
        if then["status"] == "cancelled":
            return None
    elif not counts_at(row.status, row.status_changed_at, row.created_at, as_of):
        return None
    row = dataclasses.replace(row, **then) if then else row
    missed = recorded_value(history, "missed_reason", as_of, row.missed_reason)
    not_expected = not_expected_at(row.not_expected_reason, row.status_changed_at, as_of)
    not_expected = recorded_value(history, "not_expected_reason", as_of, not_expected)
    return TimepointFacts(
        row.pk,
        row.key,
        row.rule_id,
        row.kind,
        row.instruments,
        row.anchor_kind,
        row.anchor_number,
        row.anchor_date,
        row.target_date,
        row.window_start,
        row.window_end,
        row.opens_at,
        row.closes_at,
        row.grace_closes_at,
        missed,
        not_expected,
        in_range,
    )


def timepoints_at(
    rows: Iterable[TimepointRow],
    as_of: dt.datetime,
    history: Mapping[int, Sequence[ChangeRow]],
    in_range: Callable[[dt.date], bool],
    reference_key: str | None = None,
) -> list[TimepointFacts]:
    """A patient's timepoints at ``as_of`` (:func:`timepoint_at`) whose target date then is
    ``in_range``, plus the ``reference_key`` one (the baseline) out of range with
    ``in_range=False``; by target date, key and id as of then."""
    out = []
    for row in rows:
        tp = timepoint_at(row, as_of, history=history.get(row.pk, ()))
        if tp is None:
            continue
        if not in_range(tp.target_date):
            if tp.key != reference_key:
                continue
            tp = dataclasses.replace(tp, in_range=False)
        out.append(tp)
    return sorted(out, key=lambda t: (t.target_date, t.key, t.pk))


def rewound(row: TimepointRow, history: Sequence[ChangeRow], as_of: dt.datetime) -> dict[str, Any]:
    """The :data:`REWOUND_FIELDS` that changed after ``as_of``, each with the value it had then:
    the value the first later change replaced (``history`` is in the order recorded)."""
    return _rewind(history, REWOUND_FIELDS, as_of)


def recorded_value(history: Sequence[ChangeRow], field: str, as_of: dt.datetime, fallback: str | None) -> str | None:
    """The value of ``field`` last recorded by ``as_of`` (None if recorded only later);
    ``fallback`` when ``history`` records no change of it at all."""
    changes = [c for c in history if c.field == field]
    if not changes:
        return fallback
    recorded = [c for c in changes if known(c.at, as_of)]
    return recorded[-1].value if recorded else None


def counts_at(status: str, status_changed_at: dt.datetime | None, created_at: dt.datetime, as_of: dt.datetime) -> bool:
    """Did the timepoint exist, uncancelled, at ``as_of``?"""
    if created_at > as_of:
        return False
    return not (status == "cancelled" and (status_changed_at is None or status_changed_at <= as_of))


def not_expected_at(reason: str | None, status_changed_at: dt.datetime | None, as_of: dt.datetime) -> str | None:
    """The not-expected reason if it was recorded by ``as_of`` (its status change), else None."""
    if reason and (status_changed_at is None or status_changed_at <= as_of):
        return reason
    return None


def response_at(revisions: Sequence[ResponseRow], as_of: dt.datetime) -> tuple[ResponseFacts | None, bool]:
    """(current response, started?) at ``as_of`` from one form's stored revisions (any order).

    The current revision is the newest submitted by ``as_of``, else the unfinished revision 0
    started by then; ``started`` is whether any revision was started by then."""
    row, started = current_revision(revisions, as_of)
    if row is None:
        return None, started
    done = [
        r
        for r in sorted(revisions, key=lambda r: r.revision)
        if r.status == "submitted" and known(r.started_at, as_of) and known(r.submitted_at, as_of)
    ]
    first = next((r for r in done if r.revision == 0), None)
    first_at = first.submitted_at if first is not None else None
    corrections = tuple(Correction(r.revision, r.submitted_at, r.entered_by) for r in done if r.revision > 0)  # type: ignore[arg-type]
    facts = ResponseFacts(
        row.pk,
        row.instrument_version,
        row.revision,
        row.language,
        row.respondent,
        row.relationship,
        row.mode,
        bool(done),
        row.started_at,
        first_at,
        corrections,
        first.completed_on if first is not None and first in done else None,
        row.display_mode,
        row.read_aloud_used,
        row.audio_used,
    )
    return facts, True


def form_status(tp: TimepointFacts, as_of: dt.datetime, *, submitted: bool, started: bool) -> str | None:
    """The export status of one form at ``as_of``; None when the form was not open yet
    (``scheduling.forms.form_status``, the dashboard's rule too)."""
    reason = tp.not_expected_reason
    return forms.form_status(tp, as_of, submitted=submitted, started=started, not_expected_reason=reason)


def answer_counts(response: ResponseFacts, answered_at: dt.datetime, as_of: dt.datetime) -> bool:
    """Does a saved answer belong to the form at ``as_of``? Every answer of a submitted revision does
    (a submitted form is never edited); an unfinished form's answer once saved by then."""
    return response.submitted or known(answered_at, as_of)


def events_at(
    rows: Iterable[EventRow], as_of: dt.datetime, history: Mapping[int, Sequence[ChangeRow]] | None = None
) -> list[EventFacts]:
    """Events recorded by ``as_of`` and not deleted by then, with the date and cycle length they had
    then (a correction recorded later is rewound through ``history``, event pk -> its changes in
    the order recorded); in the given order, or by date then if a correction moved one."""
    out: list[tuple[int, EventFacts]] = []
    moved = False
    for i, r in enumerate(rows):
        if not known(r.created_at, as_of) or known(r.deleted_at, as_of):
            continue
        then = _rewind((history or {}).get(r.pk, ()), EVENT_REWOUND_FIELDS, as_of)
        moved = moved or bool(then)
        values = {"date": r.date, "cycle_length_days": r.cycle_length_days, **then}
        out.append((i, EventFacts(r.kind, r.number, values["date"], values["cycle_length_days"])))
    if moved:
        out.sort(key=lambda item: (item[1].date, item[1].kind, item[1].number or 0, item[0]))
    return [facts for _i, facts in out]


def alert_at(row: AlertRow, patient: PatientFacts, seq: int, as_of: dt.datetime) -> AlertFacts | None:
    """The alert at ``as_of`` (level, escalation, acknowledgement then); None if raised later."""
    if not known(row.raised_at, as_of):
        return None
    escalated = known(row.escalated_at, as_of)
    return AlertFacts(
        patient=patient,
        seq=seq,
        level=row.level if escalated else row.initial_level,
        initial_level=row.initial_level,
        rules=row.rules,
        raised_at=row.raised_at,
        escalated=escalated,
        acknowledged_at=row.acknowledged_at if known(row.acknowledged_at, as_of) else None,
        timepoint_key=row.timepoint_key,
        instrument_id=row.instrument_id,
    )
