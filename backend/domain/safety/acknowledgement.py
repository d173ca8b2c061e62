"""The patient's acknowledgement tap on the crisis screen (clinical-spec §5.3 rule 2: "requires
an acknowledgement tap; it cannot be dismissed silently"; rule 6: "a full audit trail (who saw
what, when)"). Each tap is one audit event on the response that showed the screen; nothing else
is stored, and the event carries ids only."""

import uuid
from datetime import datetime
from typing import Final, cast

import msgspec
from sqlalchemy import Table, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.domain.alerts.auditing import audit_alert_event
from backend.identity.principal import Principal
from backend.lib.errors import NotFound

_RESPONSES: Final = cast(Table, QuestionnaireResponse.__table__)  # type: ignore[attr-defined]


class CrisisAcknowledgement(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    response_id: uuid.UUID
    """The submission whose response carried the crisis screen."""


async def acknowledge_crisis_screen(
    session: AsyncSession, principal: Principal, response_id: uuid.UUID, *, now: datetime
) -> None:
    """Record that the patient acknowledged the screen; NotFound for anyone else's response."""
    connection = await session.connection()
    r = _RESPONSES.c
    clinic_id = await connection.scalar(
        select(r.clinic_id).where(r.id == response_id, r.patient_id == principal.subject_id)
    )
    if clinic_id is None:
        raise NotFound("no such response")
    await audit_alert_event(
        session,
        actor=principal,
        action="crisis_screen.acknowledge",
        resource_type="questionnaire_response",
        resource_id=response_id,
        clinic_id=clinic_id,
        at=now,
    )
