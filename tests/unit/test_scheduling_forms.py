"""The per-form rules shared by the dashboard and exports (qol_app.scheduling.forms)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest

from qol_app.scheduling.forms import (
    NOT_RECORDED,
    PHASES,
    answered_items,
    current_revision,
    form_status,
    is_expected,
    is_received,
    reason_code,
    status_in_phase,
    window_phase,
)
from qol_app.scheduling.status import derive_status

UTC = dt.UTC
OPENS = dt.datetime(2026, 3, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Window:
    opens_at: dt.datetime = OPENS
    closes_at: dt.datetime = OPENS + dt.timedelta(days=7)
    grace_closes_at: dt.datetime = OPENS + dt.timedelta(days=10)


@dataclasses.dataclass(frozen=True)
class Rev:
    revision: int
    status: str
    started_at: dt.datetime
    submitted_at: dt.datetime | None = None


@pytest.mark.parametrize(
    ("days", "submitted", "started", "reason"),
    list(itertools.product((-1, 0, 8, 11), (False, True), (False, True), (None, "died"))),
)
def test_form_status_follows_the_timepoint_precedence(days, submitted, started, reason):
    now = OPENS + dt.timedelta(days=days)
    status = form_status(Window(), now, submitted=submitted, started=started, not_expected_reason=reason)
    derived = derive_status(Window(), now, submitted=submitted, started=started, not_expected_reason=reason)
    assert status == {"scheduled": None, "open": "pending", "overdue": "pending"}.get(derived, derived)


def test_received_needs_an_answer_and_a_decided_form():
    assert is_received("completed", 1) and is_received("partial", 3)
    assert not is_received("completed", 0)  # every item skipped
    assert not is_received("pending", 5) and not is_received("not_expected", 5) and not is_received("missed", 0)
    assert is_received("completed", 1, "submitted_answer") and not is_received("partial", 3, "submitted_answer")
    assert [s for s in ("completed", "partial", "missed", "not_expected", "pending") if is_expected(s)] == [
        "completed",
        "partial",
        "missed",
    ]


def test_reason_codes_are_never_blank_for_missed_or_partial_forms():
    assert reason_code("missed", None, None) == NOT_RECORDED == reason_code("partial", None, None)
    assert reason_code("missed", "too_ill", None) == "too_ill"
    assert reason_code("not_expected", None, "died") == "died"
    assert reason_code("completed", "too_ill", None) is None and reason_code("pending", None, None) is None


def test_current_revision_is_the_newest_sent_by_then():
    t = OPENS + dt.timedelta(days=1)
    own = Rev(0, "submitted", t, t + dt.timedelta(hours=1))
    fix = Rev(1, "submitted", t + dt.timedelta(days=3), t + dt.timedelta(days=3))
    assert current_revision([fix, own], t) == (own, True)  # started, not sent yet
    assert current_revision([fix, own], t + dt.timedelta(hours=2)) == (own, True)
    assert current_revision([fix, own], t + dt.timedelta(days=4)) == (fix, True)
    assert current_revision([fix, own], t - dt.timedelta(hours=1)) == (None, False)
    saved = Rev(0, "in_progress", t)
    assert current_revision([saved], t + dt.timedelta(days=1)) == (saved, True)


def test_window_phase_names_each_phase_and_status_refuses_unknown_ones():
    window = Window()
    phases = [window_phase(window, OPENS + dt.timedelta(days=d)) for d in (-1, 0, 8, 11)]
    assert phases == ["scheduled", "open", "overdue", "closed"] == list(PHASES)
    with pytest.raises(ValueError, match=r"unknown window phase .missed. \(known: scheduled, open, overdue, closed\)"):
        status_in_phase("missed", submitted=False, started=False, not_expected_reason=None)


def test_unknown_received_rule_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown received rule 'some' \(known: any_answer, submitted_answer\)"):
        is_received("completed", 1, "some")


def test_answered_items_of_an_unfinished_revision_count_from_its_first_saved_answer():
    t = OPENS + dt.timedelta(days=1)
    assert answered_items(4, None, submitted=True, as_of=t) == 4
    assert answered_items(4, t, submitted=False, as_of=t) == 4
    assert answered_items(4, t + dt.timedelta(seconds=1), submitted=False, as_of=t) == 0
    assert answered_items(4, None, submitted=False, as_of=t) == 0


def test_a_correction_counts_from_the_moment_it_was_sent():
    t = OPENS + dt.timedelta(days=1)
    own = Rev(0, "submitted", t, t + dt.timedelta(hours=1))
    fix = Rev(1, "submitted", t + dt.timedelta(days=3), t + dt.timedelta(days=3, hours=1))
    between = t + dt.timedelta(days=3, minutes=30)  # the correction begun, not yet sent
    assert current_revision([own, fix], between) == (own, True)
    assert current_revision([own, fix], fix.submitted_at) == (fix, True)  # sent at that very instant
    unsent = Rev(1, "submitted", t + dt.timedelta(days=3), None)
    assert current_revision([own, unsent], t + dt.timedelta(days=9)) == (own, True)
