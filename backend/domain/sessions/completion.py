"""Recording a session as held, with the N2O hold rule (clinical-spec §5.1): a patient with N2O
neurological red flags is on hold, so an N2O session is not recorded as held until a clinician
clears the hold, or overrides it for this one session, which is recorded beside the hold and
audited. The API and the dashboard both complete sessions through here."""

import uuid
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.treatment import TreatmentSession
from backend.domain.alerts.holds import n2o_hold_for, record_hold_override
from backend.domain.sessions import service
from backend.domain.sessions.schemas import SessionCompletion
from backend.identity.principal import Principal
from backend.keyring.service import Keyring
from backend.lib.errors import Conflict


class N2OSessionOnHold(Conflict):
    problem_type = "n2o-session-on-hold"
    title = "N2O sessions are on hold for this patient"


async def complete_unless_held(
    session: AsyncSession,
    keyring: Keyring,
    principal: Principal,
    *,
    patient_id: uuid.UUID,
    session_id: uuid.UUID,
    data: SessionCompletion,
    now: datetime,
) -> TreatmentSession:
    """`service.complete_session`, refused (N2OSessionOnHold) for an N2O session while the
    patient's N2O sessions are on hold, unless ``data.override_n2o_hold``."""
    planned = await service.get_session(session, patient_id, session_id)
    hold = await n2o_hold_for(session, patient_id) if planned.modality == "n2o" else None
    if hold is not None and not data.override_n2o_hold:
        raise N2OSessionOnHold(
            "this patient's N2O sessions are on hold after neurological red flags; a "
            "clinician must clear the hold, or override it for this session"
        )
    row = await service.complete_session(
        session, keyring, patient_id=patient_id, session_id=session_id, data=data, now=now
    )
    if hold is not None:
        await record_hold_override(session, principal, hold, treatment_session_id=row.id, now=now)
    return row
