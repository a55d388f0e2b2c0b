"""All mapped classes, imported here so Alembic and the app see one complete metadata."""

from qol_app.models.alerts import Alert
from qol_app.models.audit import AuditChainHead, AuditEvent
from qol_app.models.devices import DeviceGrant
from qol_app.models.exports import ExportJob
from qol_app.models.locks import DataLock, DemoRecord
from qol_app.models.notifications import OutboxMessage, ReminderLink, SchedulerHeartbeat, SchedulerLease
from qol_app.models.responses import Answer, Response, Score, WordingAudio, WordingOverlay
from qol_app.models.schedule import ScheduleAmendment, Timepoint
from qol_app.models.sessions import LoginSession
from qol_app.models.staff import RecoveryCode, SignInThrottle, SiteMembership, StaffUser
from qol_app.models.trial import Patient, PatientStatusChange, Site, TreatmentEvent

__all__ = [
    "Alert",
    "Answer",
    "AuditChainHead",
    "AuditEvent",
    "DataLock",
    "DemoRecord",
    "DeviceGrant",
    "ExportJob",
    "LoginSession",
    "OutboxMessage",
    "Patient",
    "PatientStatusChange",
    "RecoveryCode",
    "ReminderLink",
    "Response",
    "ScheduleAmendment",
    "SchedulerHeartbeat",
    "SignInThrottle",
    "SchedulerLease",
    "Score",
    "Site",
    "SiteMembership",
    "StaffUser",
    "Timepoint",
    "TreatmentEvent",
    "WordingAudio",
    "WordingOverlay",
]
