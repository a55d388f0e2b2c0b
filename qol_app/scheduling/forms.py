"""One form (timepoint x instrument): its status and whether it counts as *received* (pure).

Compliance is counted per form (CLINICAL.md §3, SISAQOL). The nurse dashboard
(``services.compliance``) and every export (``export.build``) call these functions, so their
numerators and denominators are the same by construction:

* **expected** (the denominator): forms whose outcome is decided, i.e. status ``completed``,
  ``partial`` or ``missed``. ``not_expected`` forms (after death, withdrawal, loss) and
  ``pending`` ones (window or grace period still running) are not expected (yet).
* **received** (the numerator): an expected form that meets the received rule, the setting
  ``COMPLIANCE_RECEIVED_RULE``:

  - ``any_answer`` (default): at least one item is answered, whether the form was sent or only
    saved (a partial form); a form with every item skipped is not received;
  - ``submitted_answer``: sent, with at least one item answered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Final, Protocol, TypeVar

from qol_app.scheduling.status import TimedWindow, derive_status

#: The received rules ``COMPLIANCE_RECEIVED_RULE`` may name, with their meaning.
RECEIVED_RULES: Final[dict[str, str]] = {
    "any_answer": "at least one item answered (sent or saved)",
    "submitted_answer": "sent, with at least one item answered",
}
#: The default received rule (CLINICAL.md §3).
COMPLIANCE_RECEIVED_RULE: Final = "any_answer"
#: Form statuses in the denominator of compliance.
EXPECTED_STATUSES: Final = ("completed", "partial", "missed")


def form_status(
    tp: TimedWindow,
    now: dt.datetime,
    *,
    submitted: bool,
    started: bool,
    not_expected_reason: str | None,
) -> str | None:
    """The status of one form at ``now``: completed, partial, missed, not_expected or pending
    (window or grace period still open); None when the form is not open yet. The precedence of
    ``scheduling.status.derive_status``."""
    return status_in_phase(
        window_phase(tp, now), submitted=submitted, started=started, not_expected_reason=not_expected_reason
    )


#: Where ``now`` is in a form's window: before it, in it, in its grace period, after both.
PHASES: Final = ("scheduled", "open", "overdue", "closed")


def window_phase(tp: TimedWindow, now: dt.datetime) -> str:
    """The phase of ``tp``'s window at ``now`` (one of :data:`PHASES`); SQL twin in
    ``services.compliance``."""
    status = derive_status(tp, now, submitted=False, started=False, not_expected_reason=None)
    return "closed" if status == "missed" else status


def status_in_phase(phase: str, *, submitted: bool, started: bool, not_expected_reason: str | None) -> str | None:
    """A form's status from its window's phase (:func:`window_phase`) and its own facts."""
    if submitted:
        return "completed"
    if not_expected_reason:
        return "not_expected"
    if phase == "scheduled":
        return None
    if phase in ("open", "overdue"):
        return "pending"
    if phase != "closed":
        raise ValueError(f"unknown window phase {phase!r} (known: {', '.join(PHASES)})")
    return "partial" if started else "missed"


def check_rule(rule: str) -> str:
    """``rule`` if it is a known received rule, else ``ValueError`` naming the known ones."""
    if rule not in RECEIVED_RULES:
        raise ValueError(f"unknown received rule {rule!r} (known: {', '.join(RECEIVED_RULES)})")
    return rule


def is_expected(status: str | None) -> bool:
    """Does a form with this status enter the compliance denominator?"""
    return status in EXPECTED_STATUSES


def is_received(status: str | None, n_answered: int, rule: str = COMPLIANCE_RECEIVED_RULE) -> bool:
    """Does an expected form count as received under ``rule``? ``n_answered``: items answered
    (not skipped) in the form's current revision. Never true outside the denominator, so a
    compliance rate is never above 100 %."""
    check_rule(rule)
    if status not in ("completed", "partial") or n_answered <= 0:
        return False
    return rule == "any_answer" or status == "completed"


def answered_items(
    n_answered: int, first_answered_at: dt.datetime | None, *, submitted: bool, as_of: dt.datetime
) -> int:
    """Items answered at ``as_of``, from a revision's stored count and its earliest answer: a
    submitted revision is never edited, so all of them; an unfinished one's count once its
    first answer had been saved, 0 before (enough for :func:`is_received`)."""
    if submitted:
        return n_answered
    return n_answered if first_answered_at is not None and first_answered_at <= as_of else 0


class Revision(Protocol):
    """A stored revision of a form (an ORM row, an export record, ...)."""

    @property
    def revision(self) -> int: ...

    @property
    def status(self) -> str: ...

    @property
    def started_at(self) -> dt.datetime: ...

    @property
    def submitted_at(self) -> dt.datetime | None: ...


R = TypeVar("R", bound=Revision)


def current_revision(revisions: Iterable[R], as_of: dt.datetime) -> tuple[R | None, bool]:
    """(current revision, started?) of one form at ``as_of`` from its revisions (any order; each
    with ``revision``, ``status``, ``started_at``, ``submitted_at``): the newest submitted by then,
    else the unfinished revision 0 started by then (None if none was started). Its SQL twin,
    ``services.compliance.started_form_facts``, is tested against it
    (tests/web/test_compliance_aggregate.py)."""
    return current_of(
        revisions,
        started=lambda r: r.started_at <= as_of,
        submitted=lambda r: r.status == "submitted" and r.submitted_at is not None and r.submitted_at <= as_of,
    )


class Numbered(Protocol):
    """Any row with a revision number (0 = the patient's, >0 = a correction)."""

    @property
    def revision(self) -> int: ...


T = TypeVar("T", bound=Numbered)


def current_of(
    revisions: Iterable[T], *, started: Callable[[T], bool], submitted: Callable[[T], bool]
) -> tuple[T | None, bool]:
    """The rule of :func:`current_revision` over any rows that tell whether each was started and
    submitted by the time in question (each row has ``revision``)."""
    begun = [r for r in sorted(revisions, key=lambda r: r.revision) if started(r)]
    done = [r for r in begun if submitted(r)]
    if done:
        return done[-1], True
    return next((r for r in begun if r.revision == 0), None), bool(begun)


#: The reason code of a missed or partial form for which no reason was recorded (yet): exports are
#: never blank there, while the nurse's list keeps asking (nothing is stored).
NOT_RECORDED: Final = "not_recorded"


def reason_code(status: str | None, missed_reason: str | None, not_expected_reason: str | None) -> str | None:
    """The reason code of a form in exports (codes only, never free text): the not-expected reason
    of a ``not_expected`` form; the recorded reason of a ``missed`` or ``partial`` form, else
    :data:`NOT_RECORDED`; None for any other status."""
    if status == "not_expected":
        return not_expected_reason
    if status in ("missed", "partial"):
        return missed_reason or NOT_RECORDED
    return None
