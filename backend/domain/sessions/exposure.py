"""N2O exposure per patient, from their recorded sessions, for the alert engine (§5.1).

A session's inhalation starts at its actual start (or the planned one) and lasts its recorded
N2O minutes; cancelled sessions do not count, planned ones do (the peak shows what the plan
would reach, so a clinician sees a limit coming before the session that crosses it).
"""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.treatment import TreatmentSession
from backend.domain.check_ins.exposure import N2OExposure, N2OSession, n2o_exposure

_c = TreatmentSession.__table__.c  # type: ignore[attr-defined]


async def n2o_sessions(session: AsyncSession, patient_id: uuid.UUID) -> list[N2OSession]:
    connection = await session.connection()
    rows = await connection.execute(
        select(_c.id, _c.planned_start_at, _c.started_at, _c.n2o_minutes)
        .where(_c.patient_id == patient_id, _c.modality == "n2o", _c.status != "cancelled")
        .order_by(_c.planned_start_at)
    )
    return [
        N2OSession(
            session_id=str(row.id),
            inhalation_started_at=row.started_at or row.planned_start_at,
            inhalation=timedelta(minutes=row.n2o_minutes or 0),
        )
        for row in rows.all()
    ]


async def patient_n2o_exposure(
    session: AsyncSession, patient_id: uuid.UUID, *, as_of: datetime
) -> N2OExposure:
    """Cumulative inhalation in the rolling 28 days ending `as_of`, the peak over the plan,
    the shortest interval between sessions, and the §5.1 triggers (thresholds from
    `n2o-exposure.json`)."""
    return n2o_exposure(await n2o_sessions(session, patient_id), as_of)
