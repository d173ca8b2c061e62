"""All SQL for questionnaire responses. Core statements on the request's connection: this is the
submission hot path, where ORM objects cost what users feel (shared/ceilings.md §3)."""

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Row, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.models.questionnaire_response import QuestionnaireResponse

TABLE = QuestionnaireResponse.__table__  # type: ignore[attr-defined]
_c = TABLE.c


class NewResponse(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    patient_id: uuid.UUID
    check_in_id: uuid.UUID | None
    idempotency_key: str
    instrument_id: str
    instrument_version: str
    trajectory_key: str
    scorer_version: str
    source: str
    authored_at: datetime
    received_at: datetime
    late: bool
    answers_ct: bytes
    score_ct: bytes


async def insert_unless_duplicate(connection: AsyncConnection, row: NewResponse) -> bool:
    """Insert the response; False if the patient already stored one with this idempotency key.

    ``ON CONFLICT DO NOTHING`` makes a racing retry wait for the first insert and then do nothing
    (PostgreSQL), or queue behind it (SQLite has one writer), so two retries never store twice.
    """
    statement = _INSERT_UNLESS_DUPLICATE[connection.dialect.name]
    inserted = (await connection.execute(statement, msgspec.structs.asdict(row))).first()
    return inserted is not None


# Built once: constructing a statement (and its cache key) per call cost more than executing it.
_INSERT_UNLESS_DUPLICATE = {
    "postgresql": postgresql.insert(TABLE)
    .on_conflict_do_nothing(index_elements=["patient_id", "idempotency_key"])
    .returning(_c.id),
    "sqlite": sqlite.insert(TABLE)
    .on_conflict_do_nothing(index_elements=["patient_id", "idempotency_key"])
    .returning(_c.id),
}


async def by_idempotency_key(
    connection: AsyncConnection, patient_id: uuid.UUID, key: str
) -> Row[Any] | None:
    statement = select(TABLE).where(_c.patient_id == patient_id, _c.idempotency_key == key)
    return (await connection.execute(statement)).first()


async def page_for_patient(
    connection: AsyncConnection,
    patient_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    trajectory_key: str | None = None,
) -> list[Row[Any]]:
    """Newest first, keyset-paginated on (authored_at, id) so pages stay stable under inserts."""
    statement = select(TABLE).where(_c.patient_id == patient_id)
    if trajectory_key is not None:
        statement = statement.where(_c.trajectory_key == trajectory_key)
    if after is not None:
        authored, row_id = after
        statement = statement.where(
            or_(_c.authored_at < authored, and_(_c.authored_at == authored, _c.id < row_id))
        )
    statement = statement.order_by(_c.authored_at.desc(), _c.id.desc()).limit(limit)
    return list((await connection.execute(statement)).all())


async def series_for_patient(
    connection: AsyncConnection, patient_id: uuid.UUID, trajectory_key: str
) -> list[Row[Any]]:
    statement = (
        select(_c.id, _c.authored_at, _c.instrument_version, _c.score_ct)
        .where(_c.patient_id == patient_id, _c.trajectory_key == trajectory_key)
        .order_by(_c.authored_at, _c.id)
    )
    return list((await connection.execute(statement)).all())
