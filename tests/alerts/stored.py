"""Helpers for the stored-alert tests: submit through the real service, read the real tables."""

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.audit.service import AUDIT_EVENTS
from backend.db.models.outbox import OutboxMessage
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import TreatmentCourse, TreatmentSession
from backend.domain.alerts import store
from backend.domain.responses import service
from backend.domain.responses.schemas import ResponseSubmission, SubmissionResult
from questionnaires.answers import Answer, AnswerValue
from questionnaires.registry import get_instrument
from tests.identity.conftest import MovableClock, PatientAccount, runtime_of

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
COURSES = TreatmentCourse.__table__  # type: ignore[attr-defined]
SESSIONS = TreatmentSession.__table__  # type: ignore[attr-defined]
RESPONSES = QuestionnaireResponse.__table__  # type: ignore[attr-defined]


def phq9(total: int = 0, *, item9: int | None = 0) -> dict[str, AnswerValue]:
    """PHQ-9 answers whose items 1-8 add up to ``total`` (item 9 apart; None = skipped)."""
    assert 0 <= total <= 24
    values = [total // 8 + (1 if n < total % 8 else 0) for n in range(8)]
    answers: dict[str, AnswerValue] = {f"phq9-{n + 1}": v for n, v in enumerate(values)}
    if item9 is not None:
        answers["phq9-9"] = item9
    return answers


def neuro(*yes: str) -> dict[str, AnswerValue]:
    """N2O-NEURO answers: the named items yes, every other item (and the follow-ups) no."""
    instrument = get_instrument("n2o-neuro")
    return {item.link_id: item.link_id in yes for item in instrument.items}


async def submit(
    api: AsyncTestClient[Litestar],
    clock: MovableClock,
    patient: PatientAccount,
    instrument_id: str,
    answers: Mapping[str, AnswerValue],
    *,
    authored: datetime | None = None,
    commit: bool = True,
) -> SubmissionResult:
    runtime = runtime_of(api)
    instrument = get_instrument(instrument_id)
    async with runtime.require_sessionmaker()() as session:
        # As the HTTP route does: the patient, keys, parameters and course read in one statement.
        now = clock.now()
        ref, prefetched = await service.submitting_patient(
            session,
            runtime.keyring,
            patient.id,
            clinic_id=patient.clinic_id,
            now=now,
            instrument_id=instrument.id,
            session_id=None,  # in process, no token
        )
        result = await service.submit_response(
            session,
            runtime.keyring,
            patient=ref,
            prefetched=prefetched,
            submission=ResponseSubmission(
                instrument_id=instrument.id,
                instrument_version=instrument.version,
                answers=tuple(Answer(link_id=k, value=v) for k, v in answers.items()),
                authored=authored,
            ),
            idempotency_key=None,
            now=now,
        )
        if commit:
            await session.commit()
        else:
            await session.rollback()
    return result


async def rows(api: AsyncTestClient[Litestar], statement: Any) -> list[Any]:
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        connection = await session.connection()
        return list((await connection.execute(statement)).all())


async def alerts_of(api: AsyncTestClient[Litestar], patient_id: uuid.UUID) -> list[Any]:
    a = store.ALERTS.c
    return await rows(
        api, select(store.ALERTS).where(a.patient_id == patient_id).order_by(a.opened_at, a.id)
    )


async def occurrences_for(api: AsyncTestClient[Litestar], patient_id: uuid.UUID) -> list[Any]:
    o = store.OCCURRENCES.c
    return await rows(
        api,
        select(store.OCCURRENCES)
        .where(o.patient_id == patient_id)
        .order_by(o.triggered_at, o.occurrence_key),
    )


async def outbox_for(api: AsyncTestClient[Litestar], alert_id: uuid.UUID) -> list[Any]:
    o = OUTBOX.c
    return await rows(
        api,
        select(OUTBOX).where(o.alert_id == str(alert_id)).order_by(o.created_at, o.recipient_id),
    )


async def audit_actions(api: AsyncTestClient[Litestar], resource_id: uuid.UUID) -> list[str]:
    e = AUDIT_EVENTS.c
    found = await rows(
        api,
        select(e.action)
        .where(e.resource_id == str(resource_id))
        # Unsealed events have no seq yet (the sealer runs every second): after the sealed ones.
        .order_by(e.chain, e.seq.is_(None), e.seq, e.at, e.id),
    )
    return [row.action for row in found]


async def count(api: AsyncTestClient[Litestar], table: Any) -> int:
    found = await rows(api, select(func.count()).select_from(table))
    return int(found[0][0])


async def add_course_with_session(
    api: AsyncTestClient[Litestar],
    patient: PatientAccount,
    *,
    modality: str,
    start: datetime,
    minutes: int = 60,
    status: str = "completed",
) -> uuid.UUID:
    """A treatment course with one session, written as the sessions area stores them."""
    runtime = runtime_of(api)
    course_id, session_id = uuid.uuid4(), uuid.uuid4()
    async with runtime.require_sessionmaker()() as session:
        connection = await session.connection()
        await connection.execute(
            COURSES.insert().values(
                id=course_id,
                patient_id=patient.id,
                clinic_id=patient.clinic_id,
                modality=modality,
                protocol_id=modality,
                protocol_version="1.0.0",
                status="active",
                started_at=start,
                created_at=start - timedelta(days=7),
            )
        )
        await connection.execute(
            SESSIONS.insert().values(
                id=session_id,
                course_id=course_id,
                patient_id=patient.id,
                clinic_id=patient.clinic_id,
                modality=modality,
                n2o_concentration_percent=50 if modality == "n2o" else None,
                n2o_minutes=minutes if modality == "n2o" else None,
                planned_start_at=start,
                planned_end_at=start + timedelta(minutes=minutes),
                started_at=start if status != "planned" else None,
                ended_at=start + timedelta(minutes=minutes) if status == "completed" else None,
                status=status,
                created_at=start - timedelta(days=7),
                updated_at=start,
            )
        )
        await session.commit()
    return session_id
