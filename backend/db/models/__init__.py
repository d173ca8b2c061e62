"""All tables. Importing this package registers every model on ``SQLModel.metadata``.

Models are persistence only: they never leave the service layer (DESIGN §3). This package must not
use ``from __future__ import annotations`` (it breaks SQLModel relationships, sqlmodel#196).
"""

from backend.db.models import notification as notification  # receipts, preferences, fallback
from backend.db.models.alert import (
    Alert,
    AlertOccurrence,
    AlertOnCallEntry,
    AlertParameterOverride,
    N2OSessionHold,
)
from backend.db.models.audit_event import AuditChainHead as AuditChainHead
from backend.db.models.audit_event import AuditLogEntry as AuditLogEntry
from backend.db.models.clinic import CareTeam, CareTeamMembership, Clinic
from backend.db.models.crisis_resources import ClinicCrisisResources as ClinicCrisisResources
from backend.db.models.data_key import DataKey as DataKey
from backend.db.models.dek_rotation import DekRotation as DekRotation
from backend.db.models.device import Device
from backend.db.models.enrolment_code import EnrolmentCode
from backend.db.models.export_job import (
    ExportJob,
    ExportStudy,
    ExportStudyClinic,
    ExportStudyInvitation,
)
from backend.db.models.login_failure import LoginFailureCounter
from backend.db.models.outbox import OutboxMessage
from backend.db.models.patient import Patient
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.refresh_token import RefreshToken
from backend.db.models.service_instance import ServiceInstance
from backend.db.models.staff import StaffMember
from backend.db.models.timer_pass import TimerPass
from backend.db.models.treatment import (
    CheckIn,
    ClinicProtocolOverride,
    ClinicProtocolVersion,
    CourseBaseline,
    PatientQuietHours,
    TreatmentCourse,
    TreatmentSession,
)

__all__ = [
    "Alert",
    "AlertOccurrence",
    "AlertOnCallEntry",
    "AlertParameterOverride",
    "CareTeam",
    "CareTeamMembership",
    "CheckIn",
    "Clinic",
    "ClinicProtocolOverride",
    "ClinicProtocolVersion",
    "CourseBaseline",
    "Device",
    "EnrolmentCode",
    "ExportJob",
    "ExportStudy",
    "ExportStudyClinic",
    "ExportStudyInvitation",
    "LoginFailureCounter",
    "N2OSessionHold",
    "OutboxMessage",
    "Patient",
    "PatientQuietHours",
    "QuestionnaireResponse",
    "RefreshToken",
    "ServiceInstance",
    "StaffMember",
    "TimerPass",
    "TreatmentCourse",
    "TreatmentSession",
]
