"""Holds on a patient's next N2O session (clinical-spec §5.1: HIGH and URGENT neurological
symptoms hold the next session until a clinician clears it).

The rules set holds (`evaluation`); clinicians clear them; the session API asks `n2o_hold_for`
before starting an N2O session and refuses a held one unless a clinician overrides it, which
`record_hold_override` audits. Clearing or overriding never resolves the alert behind the hold:
the hold is about the next exposure, the alert about the patient's symptoms.
"""

import uuid
from datetime import datetime

import msgspec
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import store
from backend.domain.alerts.auditing import audit_alert_event
from backend.identity.principal import Principal
from backend.lib.errors import NotFound


class Hold(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: uuid.UUID
    patient_id: uuid.UUID
    clinic_id: uuid.UUID
    alert_id: uuid.UUID
    """The alert whose trigger put the session on hold."""
    created_at: datetime
    cleared_at: datetime | None = None
    cleared_by: uuid.UUID | None = None


async def n2o_hold_for(session: AsyncSession, patient_id: uuid.UUID) -> Hold | None:
    """The patient's active N2O hold, or None: the session API must not start an N2O session
    while this returns a hold, unless a clinician overrides it (`record_hold_override`)."""
    connection = await session.connection()
    row = await store.active_hold(connection, patient_id)
    if row is None:
        return None
    return Hold(
        id=row.id,
        patient_id=row.patient_id,
        clinic_id=row.clinic_id,
        alert_id=row.alert_id,
        created_at=row.created_at,
    )


async def clear_hold(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, *, now: datetime
) -> Hold:
    """A clinician clears the hold (audited). NotFound when the patient has no active hold."""
    hold = await n2o_hold_for(session, patient_id)
    if hold is None or hold.clinic_id != principal.clinic_id:
        raise NotFound("this patient has no N2O session hold")
    connection = await session.connection()
    if not await store.clear_hold(connection, hold.id, by=principal.subject_id, at=now):
        raise NotFound("this patient has no N2O session hold")
    await audit_alert_event(
        session,
        actor=principal,
        action="n2o_hold.clear",
        resource_type="n2o_session_hold",
        resource_id=hold.id,
        clinic_id=hold.clinic_id,
        at=now,
    )
    return msgspec.structs.replace(hold, cleared_at=now, cleared_by=principal.subject_id)


async def record_hold_override(
    session: AsyncSession,
    principal: Principal,
    hold: Hold,
    *,
    treatment_session_id: uuid.UUID,
    now: datetime,
) -> None:
    """Audit that a clinician started a held N2O session anyway. The hold stays active: the
    override covers this one session, and the next still needs a decision."""
    await audit_alert_event(
        session,
        actor=principal,
        action="n2o_hold.override",
        resource_type="treatment_session",
        resource_id=treatment_session_id,
        clinic_id=hold.clinic_id,
        at=now,
    )
