"""Alerts as the dashboard shows them: inbox rows with their service-level countdown, the
patient's alert panel (pins for the plots, open alerts, history, N2O hold), the clinic's holds
and alert settings. Reading and changing alerts goes through ``backend.domain.alerts`` (which
checks the clinic and audits); this module only shapes what the pages need."""

import uuid
from datetime import datetime
from typing import Any, Final

import msgspec
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.dashboard import queries
from backend.dashboard.plots import EventMark
from backend.domain.alerts import clinic_settings, lifecycle
from backend.domain.alerts.candidate import SEVERITY_RANK, Severity
from backend.domain.alerts.holds import Hold, n2o_hold_for
from backend.domain.alerts.schemas import AlertStatus, AlertSummary
from backend.identity.principal import Principal
from backend.lib.preconditions import entity_tag

KIND_LABELS: Final = {
    "REBOUND_CANDIDATE": "Possible rebound",
    "REBOUND_CONFIRMED": "Rebound confirmed",
    "FULL_RETURN": "Full return to baseline",
    "LOSS_OF_RESPONSE": "Loss of response",
    "RELAPSE_LIKE": "Relapse-like course",
    "SEVERE_SCORE": "Severe score",
    "NON_RESPONSE_SESSION": "No response to session",
    "SUICIDALITY": "Suicidality",
    "SUICIDE_ITEM_REASK": "Suicide item skipped (re-asked)",
    "SUICIDE_ITEM_UNANSWERED": "Suicide item unanswered",
    "N2O_NEURO_SYMPTOMS": "N2O neurological symptoms",
    "MNSI_NEUROPATHY": "Neuropathy screen positive (MNSI)",
    "HAEMATOLOGICAL_MONITORING_DUE": "B12 / blood tests due",
    "KETAMINE_BLADDER": "Ketamine bladder symptoms",
    "KETAMINE_MISUSE": "Possible ketamine misuse",
    "PERSISTENT_DISSOCIATION": "Persistent dissociation",
    "PSYCHOTIC_SYMPTOMS": "Psychotic symptoms",
    "BLOOD_PRESSURE": "Blood pressure",
    "SEDATION": "Sedation",
    "COGNITIVE_PROBLEMS": "Memory or concentration problems",
    "CHECK_IN_REMINDER": "Check-in reminder",
    "MISSED_CHECK_IN": "Missed check-in",
    "MONITORING_WITHDRAWN": "Withdrew from monitoring (in the app)",
}
# How an alert ended (``ResolveRequest.outcome``), as the resolve forms offer them.
OUTCOME_LABELS: Final[dict[str, str]] = {
    "patient_contacted": "Patient contacted",
    "seen_in_clinic": "Seen in clinic",
    "treatment_adjusted": "Treatment adjusted",
    "referred_for_urgent_care": "Referred for urgent care",
    "emergency_services_involved": "Emergency services involved",
    "no_action_needed": "No action needed",
    "not_clinically_relevant": "Not clinically relevant",
    "other": "Other",
}
SEVERITIES: Final[tuple[Severity, ...]] = tuple(
    sorted(SEVERITY_RANK, key=lambda s: SEVERITY_RANK[s], reverse=True)
)
# Severities that announce themselves when they appear in an open inbox.
URGENT: Final = frozenset({"urgent", "emergency"})
INBOX_LIMIT: Final = 200


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


class AlertRow(msgspec.Struct, frozen=True, kw_only=True):
    """One inbox line; ``sla_minutes_left`` is negative when overdue, None without a target."""

    id: uuid.UUID
    patient_id: uuid.UUID
    patient_name: str
    kind: str
    kind_label: str
    severity: str
    status: str
    opened_at: datetime
    age_minutes: int
    sla_due_at: datetime | None
    sla_minutes_left: int | None
    occurrence_count: int
    escalation_level: int
    urgent: bool


def sla_minutes_left(due: datetime | None, now: datetime) -> int | None:
    if due is None:
        return None
    seconds = (due - now).total_seconds()
    # Floor towards overdue: one second past due already reads "overdue".
    return int(seconds // 60)


def describe_minutes(minutes: int) -> str:
    """ "3 h 05 min", "2 d 4 h": a countdown or an age, readable at a glance."""
    minutes = abs(minutes)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins:02d} min"
    return f"{mins} min"


def alert_row(summary: AlertSummary, patient_name: str, now: datetime) -> AlertRow:
    return AlertRow(
        id=summary.id,
        patient_id=summary.patient_id,
        patient_name=patient_name,
        kind=summary.kind,
        kind_label=kind_label(summary.kind),
        severity=summary.severity,
        status=summary.status,
        opened_at=summary.opened_at,
        age_minutes=max(0, int((now - summary.opened_at).total_seconds() // 60)),
        sla_due_at=summary.sla_due_at if summary.status == "open" else None,
        sla_minutes_left=sla_minutes_left(summary.sla_due_at, now)
        if summary.status == "open"
        else None,
        occurrence_count=summary.occurrence_count,
        escalation_level=summary.escalation_level,
        urgent=summary.severity in URGENT,
    )


class InboxFilter(msgspec.Struct, frozen=True, kw_only=True):
    statuses: tuple[AlertStatus, ...] = ("open", "acknowledged")
    severities: tuple[Severity, ...] = ()
    kind: str | None = None


async def inbox_alerts(
    session: AsyncSession, principal: Principal, chosen: InboxFilter, *, now: datetime
) -> list[AlertSummary]:
    """Unresolved alerts, most severe first, then oldest (the service's order; it audits)."""
    page = await lifecycle.list_alerts(
        session,
        principal,
        statuses=chosen.statuses,
        severities=chosen.severities,
        patient_id=None,
        cursor=None,
        limit=INBOX_LIMIT,
        now=now,
    )
    return [a for a in page.items if chosen.kind is None or a.kind == chosen.kind]


class AlertPanel(msgspec.Struct, frozen=True, kw_only=True):
    marks: list[EventMark]
    open: list[AlertRow]
    history: list[AlertRow]
    hold: Hold | None


async def patient_alert_panel(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, *, now: datetime
) -> AlertPanel:
    page = await lifecycle.list_alerts(
        session,
        principal,
        statuses=("open", "acknowledged", "resolved"),
        severities=(),
        patient_id=patient_id,
        cursor=None,
        limit=INBOX_LIMIT,
        now=now,
    )
    rows = [alert_row(a, "", now) for a in page.items]
    rows.sort(key=lambda r: r.opened_at, reverse=True)
    return AlertPanel(
        marks=[
            EventMark(at=a.first_triggered_at, label=f"{kind_label(a.kind)} ({a.severity})")
            for a in page.items
        ],
        open=[r for r in rows if r.status != "resolved"],
        history=rows,
        hold=await n2o_hold_for(session, patient_id),
    )


class HeldPatient(msgspec.Struct, frozen=True, kw_only=True):
    patient_id: uuid.UUID
    created_at: datetime


async def patients_on_hold(session: AsyncSession, clinic_id: uuid.UUID) -> list[HeldPatient]:
    rows = await queries.active_holds(await session.connection(), clinic_id)
    return [HeldPatient(patient_id=r.patient_id, created_at=r.created_at) for r in rows]


class AlertSettings(msgspec.Struct, frozen=True, kw_only=True):
    parameter_version: str
    parameters_json: str
    override: dict[str, Any] | None
    on_call: list[uuid.UUID]
    parameters_tag: str
    """Entity tags of what the API's GETs show (`backend.lib.preconditions`): the admin forms'
    If-Match, so a save from a page another save outdated is refused."""
    on_call_tag: str


async def alert_settings(session: AsyncSession, clinic_id: uuid.UUID) -> AlertSettings:
    current = await clinic_settings.current_parameters(session, clinic_id)
    on_call = await clinic_settings.on_call(session, clinic_id)
    parameters = await clinic_settings.parameters_for_clinic(session, clinic_id)
    return AlertSettings(
        parameter_version=current.version,
        parameters_json=msgspec.json.format(msgspec.json.encode(parameters).decode(), indent=2),
        override=current.override,
        on_call=list(on_call.staff_ids),
        parameters_tag=entity_tag(current),
        on_call_tag=entity_tag(on_call),
    )
