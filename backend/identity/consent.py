"""A patient's consents: to be monitored (check-ins, alerts) and to be in research exports.

Staff of the patient's clinic record both, and change them later, always from the version they
read (``If-Match`` is required: a stale copy must never re-grant a consent withdrawn meanwhile).
The patient can withdraw either consent from the app, never give one: consent is taken and
recorded by the clinic.

Withdrawing monitoring stops it at once, in the same transaction: the patient's status becomes
``withdrawn``, every check-in still open to them is cancelled and every fallback watch closed
(`sessions.stop_monitoring`); the app's session ends at its next refresh and answers are
refused. Alerts already raised stay open for the clinicians; a withdrawal from the app raises one
more, in the same transaction, so the care team learns that the patient went silent on purpose
(`alerts.rules.withdrawal`). Giving monitoring consent again sets the status back (``active``,
or ``invited`` without an enrolled device) and plans every course again
(`sessions.resume_monitoring`). Research consent is read when an export runs
(`backend.domain.exports.source`): withdrawn, the patient is in no export made afterwards.

Lock order, as every re-plan: the patient's row first (`lock_row`), then their check-ins.
"""

from datetime import datetime
from typing import Final, cast
from uuid import UUID

from sqlalchemy import Table
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models import Patient
from backend.domain.alerts.clinic_settings import parameters_for_clinic
from backend.domain.alerts.evaluation import EvaluationPlan, act_on_plan
from backend.domain.alerts.rules.withdrawal import monitoring_withdrawn_alert
from backend.domain.sessions import service as sessions
from backend.identity import repositories
from backend.identity.audit_trail import audit
from backend.identity.principal import Principal
from backend.identity.schemas import ConsentChange, ConsentSaved, ConsentView
from backend.lib.errors import Forbidden, NotFound
from backend.lib.preconditions import lock_row, require_current
from backend.state import Runtime

_PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]
_WHAT: Final = "the patient's consent"
_PATIENT_CANNOT_GRANT: Final = (
    "consent is given at your clinic, which records it; here you can only withdraw it"
)


def consent_view(patient: Patient) -> ConsentView:
    return ConsentView(
        monitoring_consent=patient.monitoring_consent,
        research_consent=patient.research_consent,
        consent_updated_at=patient.consent_updated_at,
        status=patient.status,
    )


def view_of(saved: ConsentSaved) -> ConsentView:
    """What a GET shows after this PUT (the PUT's ETag is the GET's)."""
    return ConsentView(
        monitoring_consent=saved.monitoring_consent,
        research_consent=saved.research_consent,
        consent_updated_at=saved.consent_updated_at,
        status=saved.status,
    )


def saved_view(view: ConsentView, *, cancelled: int = 0, planned: int = 0) -> ConsentSaved:
    return ConsentSaved(
        monitoring_consent=view.monitoring_consent,
        research_consent=view.research_consent,
        consent_updated_at=view.consent_updated_at,
        status=view.status,
        check_ins_cancelled=cancelled,
        check_ins_planned=planned,
    )


async def _patient(
    session: AsyncSession, principal: Principal, patient_id: UUID, *, locked: bool
) -> Patient:
    if principal.clinic_id is None:  # the access rule already refused this; belt and braces
        raise NotFound("no such patient")
    if locked:
        await lock_row(session, _PATIENTS, patient_id)
    patient = await repositories.get_patient(session, principal.clinic_id, patient_id)
    if patient is None or patient.status == "erased":
        raise NotFound("no such patient")
    if locked:
        # The values read under the lock, not a copy this session already held.
        await session.refresh(patient)
    return patient


async def read_consent(
    session: AsyncSession, runtime: Runtime, principal: Principal, patient_id: UUID
) -> ConsentView:
    """The patient's consents (staff of their clinic, or the patient themselves)."""
    patient = await _patient(session, principal, patient_id, locked=False)
    await _audit(session, runtime, principal, "patient.consent.read", patient.id)
    return consent_view(patient)


async def change_consent(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    patient_id: UUID,
    data: ConsentChange,
    *,
    if_match: frozenset[str] | None,
) -> ConsentSaved:
    """Record the patient's consents as ``data`` says, from the version ``if_match`` names
    (PreconditionFailed when it changed since). Staff only: the patient's own route is
    `withdraw_own_consent`."""
    patient = await _patient(session, principal, patient_id, locked=True)
    require_current(if_match, consent_view(patient), _WHAT)
    return await _apply(session, runtime, principal, patient, data)


async def withdraw_own_consent(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    data: ConsentChange,
    *,
    if_match: frozenset[str] | None,
) -> ConsentSaved:
    """The patient withdraws a consent from the app. Giving one that is not given is refused
    (Forbidden) and changes nothing: the clinic takes and records consent. ``if_match`` is
    optional here: a withdrawal can only turn consents off, so no stale copy can undo one."""
    patient = await _patient(session, principal, principal.subject_id, locked=True)
    require_current(if_match, consent_view(patient), _WHAT)
    if (data.monitoring_consent and not patient.monitoring_consent) or (
        data.research_consent and not patient.research_consent
    ):
        raise Forbidden(_PATIENT_CANNOT_GRANT)
    return await _apply(session, runtime, principal, patient, data)


async def _apply(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    patient: Patient,
    data: ConsentChange,
) -> ConsentSaved:
    now = runtime.clock.now()
    monitoring_changed = data.monitoring_consent != patient.monitoring_consent
    research_changed = data.research_consent != patient.research_consent
    if not (monitoring_changed or research_changed):
        return saved_view(consent_view(patient))
    patient.monitoring_consent = data.monitoring_consent
    patient.research_consent = data.research_consent
    patient.consent_updated_at = now
    cancelled = planned = 0
    if monitoring_changed and not data.monitoring_consent:
        patient.status = "withdrawn"
        session.add(patient)
        cancelled, _closed = await sessions.stop_monitoring(session, patient.id, now=now)
        if principal.is_patient:
            await _tell_care_team(session, runtime, patient, now=now, cancelled=cancelled)
    elif monitoring_changed:
        enrolled = await repositories.has_enrolled_device(session, patient.id)
        patient.status = "active" if enrolled else "invited"
        session.add(patient)
        replanned = await sessions.resume_monitoring(session, patient.id, now=now)
        planned = replanned.inserted + replanned.updated
    else:
        session.add(patient)
    await session.flush()
    for changed, given, kind in (
        (monitoring_changed, data.monitoring_consent, "monitoring"),
        (research_changed, data.research_consent, "research"),
    ):
        if changed:
            verb = "given" if given else "withdrawn"
            await _audit(session, runtime, principal, f"patient.consent.{kind}_{verb}", patient.id)
    return saved_view(consent_view(patient), cancelled=cancelled, planned=planned)


async def _tell_care_team(
    session: AsyncSession, runtime: Runtime, patient: Patient, *, now: datetime, cancelled: int
) -> None:
    """Open (or add to) the care team's MONITORING_WITHDRAWN alert and notify its first
    responders, as any alert (`alerts.evaluation.act_on_plan`)."""
    parameters = await parameters_for_clinic(session, patient.clinic_id)
    candidate = monitoring_withdrawn_alert(
        patient_id=str(patient.id),
        withdrawn_at=now,
        check_ins_cancelled=cancelled,
        parameters=parameters,
    )
    plan = EvaluationPlan(routing=patient, keys=None, new=[candidate])
    await act_on_plan(
        session, runtime.keyring, plan, patient_id=patient.id, clinic_id=patient.clinic_id, now=now
    )


async def _audit(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    action: str,
    patient_id: UUID,
) -> None:
    await audit(
        session,
        runtime,
        action=action,
        resource_type="patient",
        resource_id=patient_id,
        clinic_id=principal.clinic_id,
        purpose="treatment",
        actor=principal,
    )
