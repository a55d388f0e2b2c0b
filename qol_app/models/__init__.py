"""All mapped classes, imported here so Alembic and the app see one complete metadata."""

from qol_app.models.alerts import Alert
from qol_app.models.audit import AuditChainHead, AuditEvent
from qol_app.models.notifications import OutboxMessage, SchedulerHeartbeat, SchedulerLease
from qol_app.models.responses import Answer, Response, Score, WordingOverlay
from qol_app.models.schedule import Timepoint
from qol_app.models.sessions import LoginSession
from qol_app.models.staff import SiteMembership, StaffUser
from qol_app.models.trial import Patient, Site, TreatmentEvent

__all__ = [
    "Alert",
    "Answer",
    "AuditChainHead",
    "AuditEvent",
    "LoginSession",
    "OutboxMessage",
    "Patient",
    "Response",
    "SchedulerHeartbeat",
    "SchedulerLease",
    "Score",
    "Site",
    "SiteMembership",
    "StaffUser",
    "Timepoint",
    "TreatmentEvent",
    "WordingOverlay",
]
