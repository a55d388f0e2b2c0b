"""Plain values the dataset builders consume, and the pure "as of" rules that produce them.

The database layer (``source.py``) reads rows and turns them into these records; everything
downstream (``tables.py``, ``standards.py``) is pure over them, so it is tested without a
database and reused by every format.

As-of rules (what the data looked like at ``as_of``; CLINICAL.md §3 statuses):
- a timepoint counts only if it was created at or before ``as_of`` and was not cancelled by
  then (a cancellation after ``as_of`` is ignored);
- a form is ``completed`` when a revision was submitted at or before ``as_of`` (the newest such
  revision is the current one: staff corrections supersede the patient's revision 0);
- ``not_expected`` when the timepoint's not-expected reason was recorded by then;
- otherwise the status follows the clock at ``as_of`` (``scheduling.status.derive_status``):
  ``partial`` / ``missed`` after the grace period, ``pending`` while the window or its grace
  period is still running, and forms not yet open are left out (not expected yet).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from functools import lru_cache
from zoneinfo import ZoneInfo

from qol_app.export.sdtm import study_day
from qol_app.scheduling.status import derive_status

#: Form statuses in exports: CLINICAL.md §3 plus ``pending`` (not decided yet at the as-of time).
FORM_STATUSES = ("completed", "partial", "missed", "not_expected", "pending")

#: Proxy relationships the app records (services.responses.RELATIONSHIPS); anything else -> other.
RELATIONSHIP_CODES = ("spouse_partner", "child", "parent", "sibling", "other_relative", "friend", "professional_carer")

_ISO_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


@dataclasses.dataclass(frozen=True)
class ExportFilters:
    """What to export. Empty tuples mean "all"; dates bound the timepoints' target dates (inclusive)
    and the alerts' local dates. Sites are site codes."""

    sites: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    def __post_init__(self) -> None:
        for name in ("sites", "arms", "instruments"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("the date range ends before it starts")

    def in_range(self, day: dt.date) -> bool:
        return (self.date_from is None or day >= self.date_from) and (self.date_to is None or day <= self.date_to)

    def describe(self) -> dict[str, object]:
        """The filters as recorded in the manifest and the audit trail ("all" when not limited)."""
        return {
            "sites": list(self.sites) or "all",
            "arms": list(self.arms) or "all",
            "instruments": list(self.instruments) or "all",
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
        }


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


@dataclasses.dataclass(slots=True)
class Form:
    """One expected (timepoint, instrument) with its as-of status, scores and answers.

    ``scores``: scale -> (value, n_items, scoring_version). ``answers``: item -> (value, skipped);
    an item without an entry was not presented. Both empty when not loaded or not available.
    """

    timepoint: TimepointFacts
    instrument_id: str
    status: str
    response: ResponseFacts | None = None
    scores: Mapping[str, tuple[float | None, int | None, str]] = dataclasses.field(default_factory=dict)
    answers: Mapping[str, tuple[float | None, bool]] = dataclasses.field(default_factory=dict)

    @property
    def missing_reason(self) -> str | None:
        """Code only (never free text): not-expected reason, or the nurse's missed reason."""
        if self.status == "not_expected":
            return self.timepoint.not_expected_reason
        if self.status in ("missed", "partial"):
            return self.timepoint.missed_reason
        return None


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


@dataclasses.dataclass(frozen=True, slots=True)
class PatientForms:
    """A patient and all its expected forms in output order (timepoints by date, then key)."""

    patient: PatientFacts
    forms: list[Form]


# ---------------------------------------------------------------- as-of rules (pure)


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


def form_status(tp: TimepointFacts, as_of: dt.datetime, *, submitted: bool, started: bool) -> str | None:
    """The export status of one form at ``as_of``; None when the form was not open yet."""
    status = derive_status(tp, as_of, submitted=submitted, started=started, not_expected_reason=tp.not_expected_reason)
    if status == "scheduled":
        return None
    if status in ("open", "overdue"):
        return "pending"
    return status


def patient_status_at(status: str, status_date: dt.date | None, as_of_day: dt.date) -> tuple[str, dt.date | None]:
    """Death, withdrawal or loss count only from their date on (a later date is not known yet)."""
    if status != "active" and status_date is not None and status_date <= as_of_day:
        return status, status_date
    return "active", None


def relationship_code(value: str | None) -> str | None:
    """A known relationship code, ``other`` for anything else (never free text), None if unset."""
    if value is None:
        return None
    return value if value in RELATIONSHIP_CODES else "other"


# ---------------------------------------------------------------- dates -> study days


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_day(instant: dt.datetime | None, tz: str) -> dt.date | None:
    """The patient's local calendar date of an instant."""
    return None if instant is None else instant.astimezone(_zone(tz)).date()


def day_of(day: dt.date | None, randomization: dt.date) -> int | None:
    """SDTM study day: randomization is day 1, the day before is -1 (no day 0)."""
    return None if day is None else study_day(day, randomization)


def timepoint_code(key: str, randomization: dt.date, iso_dates: bool) -> str:
    """The timepoint key with calendar dates replaced by study days (diary-2026-03-14 -> diary-d45)."""
    if iso_dates:
        return key

    def replace(match: re.Match[str]) -> str:
        try:
            day = dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return "d"
        return f"d{study_day(day, randomization)}"

    return _ISO_DAY.sub(replace, key)
