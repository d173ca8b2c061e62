"""Bodies of the clinician alert API (msgspec; camelCase on the wire)."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.domain.alerts.candidate import Evidence
from backend.domain.alerts.holds import Hold

AlertStatus = Literal["open", "acknowledged", "resolved"]

ResolutionOutcome = Literal[
    "patient_contacted",
    "seen_in_clinic",
    "treatment_adjusted",
    "referred_for_urgent_care",
    "emergency_services_involved",
    "no_action_needed",
    "not_clinically_relevant",
    "other",
]
"""How the clinic closed the alert: a coded outcome for audits and research, beside the note."""


class AlertSummary(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: uuid.UUID
    patient_id: uuid.UUID
    care_team_id: uuid.UUID | None
    kind: str
    severity: str
    status: AlertStatus
    rule_id: str
    parameter_version: str
    occurrence_count: int
    first_triggered_at: datetime
    last_triggered_at: datetime
    opened_at: datetime
    sla_due_at: datetime | None
    escalation_level: int
    acknowledged_at: datetime | None
    acknowledged_by: uuid.UUID | None
    resolved_at: datetime | None
    resolved_by: uuid.UUID | None


class AlertPage(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    items: list[AlertSummary]
    next_cursor: str | None


class OccurrenceView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: uuid.UUID
    kind: str
    severity: str
    rule_id: str
    parameter_version: str
    triggered_at: datetime
    recorded_at: datetime
    patient_action: str | None
    evidence: Evidence


class Resolution(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    outcome: ResolutionOutcome
    note: str


class AlertDetail(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    alert: AlertSummary
    occurrences: list[OccurrenceView]
    resolution: Resolution | None
    n2o_hold: Hold | None
    """The patient's active N2O hold, if this alert set it."""


class ResolveRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    outcome: ResolutionOutcome
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class OnCallUpdate(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    staff_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=50)]
