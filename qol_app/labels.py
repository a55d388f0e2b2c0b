"""Translated labels for stored codes (statuses, events, reasons, roles...): codes are data, labels UI.

Staff pages and translated service errors (:mod:`qol_app.web_messages`) both show them."""

from __future__ import annotations

import re

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

MISSED_REASON_LABELS = {
    "too_ill": _l("Too ill"),
    "hospitalised": _l("In hospital"),
    "cognitive_impairment": _l("Cognitive impairment"),
    "refused": _l("Refused"),
    "technical": _l("Technical problem"),
    "forgot": _l("Forgot"),
    "site_error": _l("Site error (not sent, not asked)"),
    "other": _l("Other (explain)"),
}

ROLE_PAIRS = [
    ("nurse", _l("Nurse")),
    ("investigator", _l("Investigator")),
    ("statistician", _l("Statistician")),
    ("admin", _l("Administrator")),
    ("monitor", _l("Monitor (read only)")),
    ("data_manager", _l("Data manager")),
]

STATUS_LABELS = {
    "scheduled": _l("Scheduled"),
    "open": _l("Open"),
    "overdue": _l("Overdue (grace period)"),
    "completed": _l("Completed"),
    "partial": _l("Partial"),
    "missed": _l("Missed"),
    "not_expected": _l("Not expected"),
    "cancelled": _l("Cancelled"),
    # patient statuses
    "active": _l("Active"),
    "died": _l("Died"),
    "withdrawn": _l("Withdrawn"),
    "lost": _l("Lost to follow-up"),
}
EVENT_LABELS = {
    "intrathecal_dose": _l("Intrathecal dose"),
    "systemic_cycle": _l("Systemic cycle"),
    "progression": _l("Progression"),
    "end_of_treatment": _l("End of treatment"),
    "randomization": _l("Randomization"),
}
MODE_LABELS = {
    "web": _l("Patient's phone"),
    "site_tablet": _l("Site tablet"),
    "interview": _l("Interview"),
    "paper_transcribed": _l("Paper, transcribed"),
}
DISPLAY_MODE_LABELS = {
    "default": _l("Normal text"),
    "large_print": _l("Large print"),
    "mixed": _l("Normal text and large print"),
}
RESPONDENT_LABELS = {
    "self": _l("Patient alone"),
    "self_assisted": _l("Patient with help"),
    "proxy": _l("Proxy"),
}
ROLE_LABELS = dict(ROLE_PAIRS)
MESSAGE_STATUS_LABELS = {
    "queued": _l("Waiting to be sent"),
    "sending": _l("Sending"),
    "sent": _l("Sent (accepted by the gateway)"),
    "logged": _l("Logged, not delivered"),
    "failed": _l("Failed"),
    "skipped": _l("Not sent"),
    "open": _l("Open"),
    "done": _l("Done"),
}
CHANNEL_LABELS = {"sms": _l("SMS"), "email": _l("E-mail"), "task": _l("Call")}
CALL_OUTCOME_LABELS = {
    "will_answer": _l("Reached: will answer"),
    "too_ill": _l("Reached: too ill to answer"),
    "done_by_phone": _l("Form done over the phone"),
    "no_answer": _l("No answer"),
    "wrong_number": _l("Wrong number"),
}

_PATTERNS = [
    (re.compile(r"^sys-c(\d+)$"), _l("After cycle %(n)s")),
    (re.compile(r"^prog-(\d+)$"), _l("Progression %(n)s")),
    (re.compile(r"^fu-(\d+)$"), _l("Follow-up %(n)s")),
    (re.compile(r"^cal-(\d+)$"), _l("Visit %(n)s")),
]
_FIXED = {"baseline": _l("Baseline"), "eot": _l("End of treatment")}
_DIARY_RULES = {"intrathecal_diary": _l("Diary after intrathecal doses"), "nadir_diary": _l("Nadir diary")}


def timepoint_label(key: str, kind: str = "questionnaire") -> str:
    """'After cycle 3' for sys-c3, 'Diary 2026-03-14' for a diary day; unknown keys as they are."""
    if kind == "diary":
        return _("Diary %(day)s", day=key.removeprefix("diary-"))
    if key in _FIXED:
        return str(_FIXED[key])
    for pattern, label in _PATTERNS:
        match = pattern.match(key)
        if match:
            return str(label) % {"n": match.group(1)}
    return key


def group_label(group) -> str:
    """Label of a compliance group (see ``services.compliance.Group``)."""
    if group.kind == "diary":
        return str(_DIARY_RULES.get(group.rule_id, group.rule_id))
    return timepoint_label(group.key or group.rule_id)


__all__ = [
    "CALL_OUTCOME_LABELS",
    "CHANNEL_LABELS",
    "EVENT_LABELS",
    "MESSAGE_STATUS_LABELS",
    "MISSED_REASON_LABELS",
    "MODE_LABELS",
    "RESPONDENT_LABELS",
    "ROLE_LABELS",
    "STATUS_LABELS",
    "group_label",
    "timepoint_label",
]

RELATIONSHIP_LABELS = {
    "spouse_partner": _l("Spouse or partner"),
    "child": _l("Son or daughter"),
    "parent": _l("Parent"),
    "sibling": _l("Brother or sister"),
    "other_relative": _l("Other relative"),
    "friend": _l("Friend"),
    "professional_carer": _l("Professional carer"),
}
