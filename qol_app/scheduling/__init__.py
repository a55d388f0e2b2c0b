"""Pure scheduling domain: protocol schedule (data) + events -> timepoints -> status.

No Flask, no database, no clock: callers pass ``today``/``now``. Services own
persistence and apply :func:`diff` results; the status sweep calls
:func:`derive_status`.
"""

from .planner import (
    Anchor,
    EventFact,
    PatientFacts,
    Plan,
    PlannedTimepoint,
    PlanningError,
    Source,
    diary_key,
    plan,
    plan_ahead,
)
from .reconcile import (
    Amendment,
    Cancel,
    ExistingTimepoint,
    MarkNotExpected,
    ReconcilePlan,
    Update,
    apply_plan,
    diff,
)
from .rules import SCHEDULES_DIR, Rule, Schedule, load_schedule, parse_schedule
from .status import STATUSES, Status, derive_status, is_late
from .timewindows import local_date_of, local_day_start

__all__ = [
    "SCHEDULES_DIR",
    "STATUSES",
    "Amendment",
    "Anchor",
    "Cancel",
    "EventFact",
    "ExistingTimepoint",
    "MarkNotExpected",
    "PatientFacts",
    "Plan",
    "PlannedTimepoint",
    "PlanningError",
    "ReconcilePlan",
    "Rule",
    "Schedule",
    "Source",
    "Status",
    "Update",
    "apply_plan",
    "derive_status",
    "diary_key",
    "diff",
    "is_late",
    "load_schedule",
    "local_date_of",
    "local_day_start",
    "parse_schedule",
    "plan",
    "plan_ahead",
]
