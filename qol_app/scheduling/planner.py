"""Expected timepoints from schedule rules + recorded events (pure).

``plan()`` is a function of its arguments only: no clock, no database. The
services layer calls it whenever an event is recorded/edited/deleted and on
each sweep, then hands the result to :func:`qol_app.scheduling.reconcile.diff`.
Because the result is recomputed from scratch, a delayed cycle, a deleted
event or a late death record all converge to the same plan.

Decisions (see also the schedule format in :mod:`.rules`):

* Event dates are *actual* administration dates (CLINICAL.md §1), taken as
  calendar dates; day arithmetic is on dates, and the patient's timezone only
  turns window dates into UTC instants (:mod:`.timewindows`).
* Not expected: a timepoint whose target date is after the patient's
  ``end_date`` is *kept* with ``expected=False`` and the end status as reason,
  so compliance denominators can exclude it and exports still list it.
  A timepoint whose target is on or before ``end_date`` stays expected.
* Recurring rules stop at the lookahead horizon (``today + lookahead_days``;
  once a patient has ended, ``min(today, end_date) + lookahead_days``, so a
  dead patient does not accrue new rows every day), at ``max_count`` and at
  ``study_end_days`` after randomization. The horizon is the only thing
  ``today`` changes, so :func:`plan_ahead` can say on which day the plan next
  changes by itself (``Plan.changes_on``): the sweep replans a patient then,
  not every day.
* Event keys use ``{n}`` = the event's number, or (if absent) its 1-based
  order among events of that kind by (date, id). Staff-entered numbers are
  preferred: an order-based key shifts when an earlier event is inserted.
* Two timepoints with the same key (e.g. two end-of-treatment events) are a
  data error: :class:`PlanningError`, never a silent pick.
* Cycle days (format 2 schedules): day 1 is the administration day. A window
  with ``until_next_cycle`` ends (grace included) no later than the day before
  the next recorded administration of the same kind; if that day falls before
  the window would open, the window shrinks to that one day.
* Late entry: a timepoint whose grace period had already ended when every
  event behind it was recorded (``recorded_at``) was never offered to the
  patient: ``not_offered`` is set, and the service stores it as missed with
  the administrative reason ``not_offered``. Anchors without a recorded time
  are taken as recorded in time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final, Literal

from .rules import EVENT_KINDS, AnchorKind, Rule, Schedule, TimepointKind
from .timewindows import local_day_start, zone

__all__ = [
    "END_STATUSES",
    "Anchor",
    "EventFact",
    "PatientFacts",
    "PlannedTimepoint",
    "Plan",
    "PlanningError",
    "Source",
    "diary_key",
    "plan",
    "plan_ahead",
]

EndStatus = Literal["died", "withdrawn", "lost"]
EventKind = Literal["intrathecal_dose", "systemic_cycle", "progression", "end_of_treatment"]
EventId = int | str
END_STATUSES: Final[tuple[str, ...]] = ("died", "withdrawn", "lost")
_DAY: Final = timedelta(days=1)


class PlanningError(ValueError):
    """Inputs cannot give a consistent plan (duplicate keys or event ids, unknown arm)."""


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """What the planner needs to know about one patient.

    ``end_date`` is the date of death, withdrawal or last contact (lost); it
    is set exactly when ``end_status`` is.
    """

    arm: str
    randomization_date: date
    timezone: str
    end_status: EndStatus | None = None
    end_date: date | None = None
    #: When the enrolment (the randomization anchor) was recorded; None: in time.
    enrolled_at: datetime | None = None

    def __post_init__(self) -> None:
        zone(self.timezone)  # fail early on a bad IANA name
        if self.end_status is not None and self.end_status not in END_STATUSES:
            raise ValueError(f"end_status must be one of {END_STATUSES} or None, got {self.end_status!r}")
        if (self.end_status is None) != (self.end_date is None):
            raise ValueError("end_status and end_date must be given together")


@dataclass(frozen=True, slots=True)
class EventFact:
    """A treatment event as recorded by staff (actual date, site-local)."""

    id: EventId
    kind: EventKind
    date: date
    number: int | None = None
    cycle_length_days: int | None = None
    #: When staff recorded the event (aware UTC); None: taken as recorded in time.
    recorded_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"event {self.id!r}: kind must be one of {EVENT_KINDS}, got {self.kind!r}")
        for name in ("number", "cycle_length_days"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"event {self.id!r}: {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class Anchor:
    """The event (or randomization) a timepoint hangs on; ``event_id`` None for randomization."""

    kind: AnchorKind
    event_id: EventId | None
    number: int | None
    date: date
    recorded_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Source:
    """One rule x anchor that asked for this timepoint; ``day`` = target - anchor date."""

    rule_id: str
    anchor: Anchor
    day: int


@dataclass(frozen=True, slots=True)
class PlannedTimepoint:
    """One expected form (or not-expected one, kept with its reason).

    Dates are patient-local and inclusive; instants are aware UTC datetimes:
    ``opens_at`` = start of ``window_start``, ``closes_at`` = start of the day
    after ``window_end`` (exclusive), ``grace_closes_at`` = start of the day
    after ``grace_end``. ``anchor`` is the primary source (earliest anchor
    date); ``sources`` lists every rule/anchor merged into this timepoint.
    """

    key: str
    rule_id: str
    kind: TimepointKind
    instruments: tuple[str, ...]
    anchor: Anchor
    sources: tuple[Source, ...]
    target_date: date
    window_start: date
    window_end: date
    grace_end: date
    opens_at: datetime
    closes_at: datetime
    grace_closes_at: datetime
    expected: bool = True
    not_expected_reason: EndStatus | None = None
    #: Every event behind it was recorded after its grace period ended: never offered.
    not_offered: bool = False

    @property
    def source_anchors(self) -> tuple[Anchor, ...]:
        """All anchors (primary first) this timepoint came from."""
        return tuple(source.anchor for source in self.sources)

    @property
    def event_ids(self) -> tuple[EventId, ...]:
        """Ids of the recorded events behind this timepoint (none for randomization)."""
        return tuple(dict.fromkeys(a.event_id for a in self.source_anchors if a.event_id is not None))


def diary_key(day: date) -> str:
    """Diaries are keyed by local date so overlapping rules merge into one form."""
    return f"diary-{day.isoformat()}"


@dataclass(slots=True)
class _Draft:
    """A timepoint before merging and instant computation."""

    key: str
    rule: Rule
    rule_order: int
    source: Source
    target: date
    window_start: date
    window_end: date
    grace_end: date
    merged: list[tuple[tuple[date, int, tuple[int, int, str]], Source]] = field(default_factory=list)
    extra_instruments: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Plan:
    """A patient's timepoints on ``today``, and the first later day they differ by the calendar alone."""

    timepoints: list[PlannedTimepoint]
    #: The patient-local day on which a recurring rule's next occurrence reaches the lookahead
    #: horizon, the first day after ``today`` whose plan (same schedule, events and end status)
    #: differs; None when the calendar alone never changes it (no recurring rule left, or it ends
    #: at ``max_count``, at ``study_end_days`` or with the patient's end status).
    changes_on: date | None


def plan(
    schedule: Schedule,
    patient: PatientFacts,
    events: Iterable[EventFact],
    today: date,
) -> list[PlannedTimepoint]:
    """All timepoints the schedule asks of this patient, sorted by target date then key.

    ``today`` is the patient-local date; it only bounds recurring rules
    (lookahead), so everything else is the same whatever day it is computed.
    """
    return plan_ahead(schedule, patient, events, today).timepoints


def plan_ahead(
    schedule: Schedule,
    patient: PatientFacts,
    events: Iterable[EventFact],
    today: date,
) -> Plan:
    """:func:`plan`, and the day it next changes because the calendar moved on (:class:`Plan`)."""
    if patient.arm not in schedule.arms:
        raise PlanningError(f"arm {patient.arm!r} is not in schedule {schedule.id!r} ({', '.join(schedule.arms)})")
    anchors = _anchors_by_kind(patient, events)
    horizon = _horizon(schedule, patient, today)
    study_end = (
        patient.randomization_date + timedelta(days=schedule.study_end_days)
        if schedule.study_end_days is not None
        else None
    )

    drafts: dict[str, _Draft] = {}
    beyond: list[date] = []  # window starts of the first occurrences past the horizon
    for order, rule in enumerate(schedule.rules):
        if not rule.applies_to(patient.arm):
            continue
        for info in anchors.get(rule.anchor, ()):
            for draft in _drafts_for(rule, order, info, horizon, study_end, beyond):
                _add(drafts, draft)

    tz = zone(patient.timezone)
    starts: dict[date, datetime] = {}  # consecutive diary days share boundaries

    def day_start(day: date) -> datetime:
        if day not in starts:
            starts[day] = local_day_start(day, tz)
        return starts[day]

    open_at_end = schedule.open_forms_at_end == "not_expected"
    planned = [_finish(draft, patient, day_start, open_at_end) for draft in drafts.values()]
    planned.sort(key=lambda tp: (tp.target_date, tp.window_start, tp.key))
    return Plan(planned, _changes_on(schedule, patient, beyond))


# --------------------------------------------------------------------------- helpers


def _event_sort_key(event: EventFact) -> tuple[date, tuple[int, int, str]]:
    return (event.date, _id_order(event.id))


@dataclass(frozen=True, slots=True)
class _AnchorInfo:
    anchor: Anchor
    n: int
    cycle_length: int | None
    next_date: date | None = None  # the next anchor of the same kind (next administration)


def _anchors_by_kind(patient: PatientFacts, events: Iterable[EventFact]) -> dict[str, list[_AnchorInfo]]:
    """Anchor, effective number n, cycle length, next date per anchor kind, in date order."""
    randomization = Anchor("randomization", None, None, patient.randomization_date, patient.enrolled_at)
    result: dict[str, list[_AnchorInfo]] = {"randomization": [_AnchorInfo(randomization, 1, None)]}
    seen: set[EventId] = set()
    ordered = sorted(events, key=_event_sort_key)
    ordinals: dict[str, int] = {}
    for event in ordered:
        if event.id in seen:
            raise PlanningError(f"event id {event.id!r} appears twice")
        seen.add(event.id)
        ordinals[event.kind] = ordinals.get(event.kind, 0) + 1
        n = event.number if event.number is not None else ordinals[event.kind]
        anchor = Anchor(event.kind, event.id, event.number, event.date, event.recorded_at)
        result.setdefault(event.kind, []).append(_AnchorInfo(anchor, n, event.cycle_length_days))
    for kind, infos in result.items():
        later = [
            next((b.anchor.date for b in infos[i + 1 :] if b.anchor.date > a.anchor.date), None)
            for i, a in enumerate(infos)
        ]
        result[kind] = [_AnchorInfo(a.anchor, a.n, a.cycle_length, nxt) for a, nxt in zip(infos, later, strict=True)]
    return result


def _horizon(schedule: Schedule, patient: PatientFacts, today: date) -> date:
    base = today
    if patient.end_date is not None and patient.end_date < today:
        base = patient.end_date
    return base + timedelta(days=schedule.lookahead_days)


def _changes_on(schedule: Schedule, patient: PatientFacts, beyond: list[date]) -> date | None:
    """The first day whose horizon (:func:`_horizon`) reaches one of the window starts ``beyond``.

    Each lies past today's horizon, so the day is after today. Once the patient has ended the
    horizon stops at ``end_date + lookahead_days``: a window starting later never comes.
    """
    lookahead = timedelta(days=schedule.lookahead_days)
    days = [start - lookahead for start in beyond]
    if patient.end_date is not None:
        days = [day for day in days if day <= patient.end_date]
    return min(days, default=None)


def _drafts_for(
    rule: Rule,
    order: int,
    info: _AnchorInfo,
    horizon: date,
    study_end: date | None,
    beyond: list[date],
) -> Iterable[_Draft]:
    """The rule's drafts for one anchor; a recurring rule stopped by the horizon adds the window
    start of its first occurrence past it to ``beyond``."""
    anchor, n = info.anchor, info.n
    if rule.days is not None:  # diary: one draft per day, the day is the window
        for day in range(rule.days.first, rule.days.last + 1):
            on = anchor.date + timedelta(days=day)
            yield _Draft(
                key=diary_key(on),
                rule=rule,
                rule_order=order,
                source=Source(rule.id, anchor, day),
                target=on,
                window_start=on,
                window_end=on,
                grace_end=on + timedelta(days=rule.grace_days),
            )
        return

    assert rule.target is not None and rule.window is not None and rule.key is not None
    key_template = rule.key
    offset = rule.target.offset(info.cycle_length or rule.cycle_length_days)
    before = timedelta(days=rule.window.before)
    after = timedelta(days=rule.window.after)
    last_day = info.next_date - _DAY if rule.window.until_next_cycle and info.next_date is not None else None

    def draft(offset_days: int, k: int | None) -> _Draft:
        target = anchor.date + timedelta(days=offset_days)
        start, end = target - before, target + after
        grace_end = end + timedelta(days=rule.grace_days)
        if last_day is not None:
            end, grace_end = min(end, last_day), min(grace_end, last_day)
            start = min(start, end)
            target = max(start, min(target, end))
        return _Draft(
            key=key_template.format(n=n, k=k),
            rule=rule,
            rule_order=order,
            source=Source(rule.id, anchor, (target - anchor.date).days),
            target=target,
            window_start=start,
            window_end=end,
            grace_end=grace_end,
        )

    if rule.repeat is None:
        yield draft(offset, None)
        return
    k = 1
    while rule.repeat.max_count is None or k <= rule.repeat.max_count:
        candidate = draft(offset + (k - 1) * rule.repeat.every_days, k)
        if study_end is not None and candidate.target > study_end:
            return
        if candidate.window_start > horizon:
            beyond.append(candidate.window_start)
            return
        yield candidate
        k += 1


def _add(drafts: dict[str, _Draft], new: _Draft) -> None:
    current = drafts.get(new.key)
    if current is None:
        drafts[new.key] = new
        return
    if new.rule.kind != "diary" or current.rule.kind != "diary":
        raise PlanningError(
            f"timepoint key {new.key!r} produced twice (rule {current.rule.id!r} from "
            f"{_describe(current.source.anchor)}, rule {new.rule.id!r} from {_describe(new.source.anchor)}); "
            "check for duplicate event numbers or repeated one-off events"
        )
    # Same local day from two diary rules/anchors: one form. The earliest anchor is
    # primary; instruments are the union; the longest grace wins so no source loses
    # time it was promised.
    primary, other = (new, current) if _draft_order(new) < _draft_order(current) else (current, new)
    primary.merged = [*primary.merged, *other.merged, (_draft_order(other), other.source)]
    primary.extra_instruments = [
        *primary.extra_instruments,
        *other.rule.instruments,
        *other.extra_instruments,
    ]
    primary.grace_end = max(primary.grace_end, other.grace_end)
    drafts[new.key] = primary


def _id_order(event_id: EventId | None) -> tuple[int, int, str]:
    # ints and strs do not compare; keep each family in its natural order.
    if event_id is None:
        return (0, 0, "")
    if isinstance(event_id, int):
        return (1, event_id, "")
    return (2, 0, event_id)


def _draft_order(draft: _Draft) -> tuple[date, int, tuple[int, int, str]]:
    anchor = draft.source.anchor
    return (anchor.date, draft.rule_order, _id_order(anchor.event_id))


def _describe(anchor: Anchor) -> str:
    ident = "" if anchor.event_id is None else f" {anchor.event_id!r}"
    return f"{anchor.kind}{ident} on {anchor.date.isoformat()}"


def _finish(
    draft: _Draft, patient: PatientFacts, day_start: Callable[[date], datetime], end_open_forms: bool
) -> PlannedTimepoint:
    """``end_open_forms``: a form still open (grace included) on the end-status date is not expected
    either (the patient cannot answer it any more); else only forms targeted after that date."""
    merged = sorted(draft.merged, key=lambda item: item[0])
    sources = (draft.source, *(source for _, source in merged))
    instruments = tuple(dict.fromkeys((*draft.rule.instruments, *draft.extra_instruments)))
    end = patient.end_date
    ended_before = end is not None and (
        draft.target > end or (end_open_forms and draft.window_start <= end <= draft.grace_end)
    )
    grace_closes_at = day_start(draft.grace_end + _DAY)
    not_offered = not ended_before and all(
        source.anchor.recorded_at is not None and source.anchor.recorded_at >= grace_closes_at for source in sources
    )
    return PlannedTimepoint(
        key=draft.key,
        rule_id=draft.rule.id,
        kind=draft.rule.kind,
        instruments=instruments,
        anchor=draft.source.anchor,
        sources=sources,
        target_date=draft.target,
        window_start=draft.window_start,
        window_end=draft.window_end,
        grace_end=draft.grace_end,
        opens_at=day_start(draft.window_start),
        closes_at=day_start(draft.window_end + _DAY),
        grace_closes_at=grace_closes_at,
        expected=not ended_before,
        not_expected_reason=patient.end_status if ended_before else None,
        not_offered=not_offered,
    )
