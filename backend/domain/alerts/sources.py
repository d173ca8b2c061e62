"""SQL reading what a patient's alert timeline is made of: responses, the current treatment course
(its sessions, baselines and check-ins). Read-only, on the caller's connection."""

import uuid
from datetime import datetime
from typing import Final, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import CheckIn, CourseBaseline, TreatmentCourse, TreatmentSession
from backend.domain.alerts.rows import AnyRow

RESPONSES: Final = cast(Table, QuestionnaireResponse.__table__)  # type: ignore[attr-defined]
_COURSES: Final = cast(Table, TreatmentCourse.__table__)  # type: ignore[attr-defined]
_SESSIONS: Final = cast(Table, TreatmentSession.__table__)  # type: ignore[attr-defined]
_BASELINES: Final = cast(Table, CourseBaseline.__table__)  # type: ignore[attr-defined]
_CHECK_INS: Final = cast(Table, CheckIn.__table__)  # type: ignore[attr-defined]

UNANSWERED_CHECK_IN_STATUSES: Final = ("sent", "missed")
"""Check-ins the patient was sent and has not completed. Pending or failed ones never reached the
patient, so not answering them is not the patient's miss."""


# The statements every submission runs are built once (building one cost more than running it).
_R = RESPONSES.c
_RESPONSE_COLUMNS: Final = (
    _R.id,
    _R.instrument_id,
    _R.instrument_version,
    _R.authored_at,
    _R.answers_ct,
    _R.score_ct,
)
_SINCE: Final = select(*_RESPONSE_COLUMNS).where(
    _R.patient_id == bindparam("patient_id"), _R.authored_at >= bindparam("since")
)
_SAME_INSTRUMENT: Final = (_R.patient_id == bindparam("patient_id")) & (
    _R.instrument_id == bindparam("instrument_id")
)
_LATEST_OTHER_OF_INSTRUMENT: Final = (
    select(*_RESPONSE_COLUMNS)
    .where(_SAME_INSTRUMENT, _R.id != bindparam("response_id"))
    .order_by(_R.authored_at.desc(), _R.id.desc())
    .limit(1)
)
_RESPONSES_OF: Final = (
    select(*_RESPONSE_COLUMNS)
    .where(_R.patient_id == bindparam("patient_id"))
    .order_by(_R.authored_at, _R.id)
)
_CURRENT_COURSE: Final = (
    select(_COURSES.c.id, _COURSES.c.modality, _COURSES.c.status)
    .where(_COURSES.c.patient_id == bindparam("patient_id"))
    .order_by(
        (_COURSES.c.status == "active").desc(), _COURSES.c.created_at.desc(), _COURSES.c.id.desc()
    )
    .limit(1)
)


async def responses_of(connection: AsyncConnection, patient_id: uuid.UUID) -> list[AnyRow]:
    return list((await connection.execute(_RESPONSES_OF, {"patient_id": patient_id})).all())


async def responses_since(
    connection: AsyncConnection, patient_id: uuid.UUID, since: datetime
) -> list[AnyRow]:
    """Responses authored at or after ``since``, in no particular order."""
    parameters = {"patient_id": patient_id, "since": since}
    return list((await connection.execute(_SINCE, parameters)).all())


async def latest_other_of_instrument(
    connection: AsyncConnection, patient_id: uuid.UUID, instrument_id: str, response_id: uuid.UUID
) -> AnyRow | None:
    """The latest answer to the instrument other than ``response_id`` (by authored time, id)."""
    parameters = {
        "patient_id": patient_id,
        "instrument_id": instrument_id,
        "response_id": response_id,
    }
    return (await connection.execute(_LATEST_OTHER_OF_INSTRUMENT, parameters)).first()


async def responses_by_id(
    connection: AsyncConnection, patient_id: uuid.UUID, ids: list[uuid.UUID]
) -> list[AnyRow]:
    statement = select(*_RESPONSE_COLUMNS).where(_R.patient_id == patient_id, _R.id.in_(ids))
    return list((await connection.execute(statement)).all())


async def current_course(connection: AsyncConnection, patient_id: uuid.UUID) -> AnyRow | None:
    """The active course, else the latest one (a course that ended is still monitored after)."""
    return (await connection.execute(_CURRENT_COURSE, {"patient_id": patient_id})).first()


async def sessions_of_course(connection: AsyncConnection, course_id: uuid.UUID) -> list[AnyRow]:
    s = _SESSIONS.c
    statement = (
        select(
            s.id,
            s.modality,
            s.status,
            s.planned_start_at,
            s.planned_end_at,
            s.started_at,
            s.ended_at,
            s.n2o_concentration_percent,
            s.n2o_minutes,
        )
        .where(s.course_id == course_id, s.status != "cancelled")
        .order_by(s.planned_start_at, s.id)
    )
    return list((await connection.execute(statement)).all())


async def baselines_of_course(connection: AsyncConnection, course_id: uuid.UUID) -> list[AnyRow]:
    b = _BASELINES.c
    statement = select(b.instrument_id, b.response_id).where(b.course_id == course_id)
    return list((await connection.execute(statement)).all())


async def unanswered_check_ins(
    connection: AsyncConnection, course_id: uuid.UUID, now: datetime
) -> list[AnyRow]:
    c = _CHECK_INS.c
    statement = (
        select(c.id, c.session_id, c.due_at)
        .where(
            c.course_id == course_id,
            c.status.in_(UNANSWERED_CHECK_IN_STATUSES),
            c.answered_at.is_(None),
            c.due_at <= now,
        )
        .order_by(c.due_at, c.id)
    )
    return list((await connection.execute(statement)).all())


async def recently_active_patients(
    connection: AsyncConnection, since: datetime, *, after: uuid.UUID | None, limit: int
) -> list[AnyRow]:
    """Patients (and clinics) with a response received, a session, or a check-in due since
    ``since``: the ones time-driven rules can still fire for. Keyset-paged by patient id."""
    r, s, c = RESPONSES.c, _SESSIONS.c, _CHECK_INS.c
    union = (
        select(r.patient_id, r.clinic_id)
        .where(r.received_at >= since)
        .union(
            select(s.patient_id, s.clinic_id).where(s.planned_start_at >= since),
            select(c.patient_id, c.clinic_id).where(c.due_at >= since),
        )
        .subquery()
    )
    statement = select(union.c.patient_id, union.c.clinic_id)
    if after is not None:
        statement = statement.where(union.c.patient_id > after)
    statement = statement.order_by(union.c.patient_id).limit(limit)
    return list((await connection.execute(statement)).all())
