"""What a patient's app shows: the check-ins open now and the next planned ones; and the ladder
a clinician reads (every row, with what was sent, received and opened (the app's receipts),
answered and missed)."""

import uuid
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.check_ins.repository import TABLE, rows_for_patient
from backend.domain.receipts.repository import NO_RECEIPTS
from backend.domain.receipts.repository import of_check_ins as first_receipts
from backend.domain.sessions.schemas import (
    CheckInView,
    DueCheckIns,
    PatientCheckIn,
    QuestionnaireToAnswer,
)
from questionnaires.registry import get_instrument

_c = TABLE.c
NEXT_SHOWN = 3


def _for_patient(row: object) -> PatientCheckIn:
    answered = set(row.answered_instruments)  # type: ignore[attr-defined]
    questionnaires = []
    for instrument_id in row.instruments:  # type: ignore[attr-defined]
        instrument = get_instrument(instrument_id)
        questionnaires.append(
            QuestionnaireToAnswer(
                instrument_id=instrument.id,
                instrument_version=instrument.version,
                title=instrument.title,
                answered=instrument_id in answered,
            )
        )
    return PatientCheckIn(
        id=row.id,  # type: ignore[attr-defined]
        label=row.label,  # type: ignore[attr-defined]
        due_at=row.due_at,  # type: ignore[attr-defined]
        opens_at=row.opens_at,  # type: ignore[attr-defined]
        closes_at=row.closes_at,  # type: ignore[attr-defined]
        questionnaires=questionnaires,
    )


async def due_for_patient(
    session: AsyncSession, patient_id: uuid.UUID, *, now: datetime
) -> DueCheckIns:
    """Open now: issued (or due and about to be) and still inside the window. Next: the few
    planned after now."""
    connection = await session.connection()
    open_now = await connection.execute(
        select(TABLE)
        .where(
            _c.patient_id == patient_id,
            _c.closes_at > now,
            or_(
                _c.status.in_(("claimed", "sent")),
                and_(_c.status == "pending", _c.due_at <= now),
            ),
        )
        .order_by(_c.closes_at, _c.id)
    )
    upcoming = await connection.execute(
        select(TABLE)
        .where(_c.patient_id == patient_id, _c.status == "pending", _c.due_at > now)
        .order_by(_c.due_at, _c.id)
        .limit(NEXT_SHOWN)
    )
    return DueCheckIns(
        now=[_for_patient(r) for r in open_now.all()],
        next=[_for_patient(r) for r in upcoming.all()],
    )


async def ladder(session: AsyncSession, patient_id: uuid.UUID) -> list[CheckInView]:
    connection = await session.connection()
    rows = await rows_for_patient(connection, patient_id)
    receipts = await first_receipts(connection, (r.id for r in rows))
    return [
        CheckInView(
            id=r.id,
            session_id=r.session_id,
            step=r.step,
            label=r.label,
            status=r.status,
            priority=r.priority,
            instruments=tuple(r.instruments),
            answered_instruments=tuple(r.answered_instruments),
            opens_at=r.opens_at,
            closes_at=r.closes_at,
            due_at=r.due_at,
            during_quiet_hours=bool(r.during_quiet_hours),
            merged_into=r.merged_into,
            devices_notified=r.devices_notified,
            reminders_sent=r.reminders_sent,
            sent_at=r.sent_at,
            answered_at=r.answered_at,
            missed_at=r.missed_at,
            missed_flag_at=r.missed_flag_at,
            received_at=receipts.get(str(r.id), NO_RECEIPTS).received_at,
            opened_at=receipts.get(str(r.id), NO_RECEIPTS).opened_at,
        )
        for r in rows
    ]
