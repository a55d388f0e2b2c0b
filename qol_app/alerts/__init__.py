"""Symptom-diary alerts: rules as data, pure evaluation, amber-to-red escalation.

No Flask, database or clock access here; callers persist the AlertResult and
pass ``now`` explicitly.
"""

from qol_app.alerts.escalation import DEFAULT_ESCALATION_HOURS, escalation_due_at, needs_escalation
from qol_app.alerts.rules import (
    LEVELS,
    REQUIRED_LOCALES,
    AlertResult,
    AlertRule,
    AlertRuleSet,
    AlertSettings,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    Level,
    TriggeredRule,
    default_rules_path,
    evaluate,
    load_alert_rules,
)

__all__ = [
    "DEFAULT_ESCALATION_HOURS",
    "LEVELS",
    "REQUIRED_LOCALES",
    "AlertResult",
    "AlertRule",
    "AlertRuleSet",
    "AlertSettings",
    "AllOf",
    "AnyOf",
    "Comparison",
    "Condition",
    "Level",
    "TriggeredRule",
    "default_rules_path",
    "escalation_due_at",
    "evaluate",
    "load_alert_rules",
    "needs_escalation",
]
