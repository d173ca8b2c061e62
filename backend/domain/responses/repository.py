"""All SQL for questionnaire responses. Core statements on the request's connection: this is the
submission hot path, where ORM objects cost what users feel (shared/ceilings.md §3)."""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, NamedTuple, cast

import msgspec
from sqlalchemy import Row, Select, Table, and_, bindparam, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.audit.service import AUDIT_EVENTS, AUDITED_COLUMNS, insert_audit_row
from backend.db.direct import DirectStatement
from backend.db.models.patient import Patient
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import TreatmentCourse
from backend.domain.alerts.rows import AnyRow
from backend.domain.alerts.sources import (
    CURRENT_COURSE_ID,
    CourseParts,
    CourseRef,
    Part,
    PriorResponses,
    collect_course_parts,
    course_part_selects,
    padded_union,
    prior_response_parts,
)
from backend.domain.alerts.store import NEWEST_OVERRIDE_FIRST, OVERRIDES
from backend.identity.repositories import family_live
from backend.keyring.service import DATA_KEYS

TABLE = QuestionnaireResponse.__table__  # type: ignore[attr-defined]
_c = TABLE.c
_PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]
_COURSES: Final = cast(Table, TreatmentCourse.__table__)  # type: ignore[attr-defined]


class SubmissionContext(NamedTuple):
    """Everything a submission reads before it writes, from one statement."""

    clinic_id: uuid.UUID
    status: str
    session_live: bool
    """The caller's session (refresh-token family) is not revoked (`identity.middleware`)."""
    locale: str | None
    care_team_id: uuid.UUID | None
    override_document: str | None
    """The clinic's newest alert-parameter override (`alerts.clinic_settings`), None = defaults."""
    course: CourseRef | None
    parts: CourseParts | None
    """The current course's sessions, baselines and unanswered check-ins due by ``now``."""
    key_rows: list[AnyRow]
    """The patient's live data-key rows (`Keyring.keys_from_rows`); none once erased."""
    prior: PriorResponses
    """The patient's latest stored answers to the submitted instrument and to the B12 risk
    items (what the alert rules read around a submission, `alerts.sources.submission_scope`)."""


async def submission_context(
    connection: AsyncConnection,
    patient_id: uuid.UUID,
    now: datetime,
    *,
    instrument_id: str,
    b12_instrument_id: str,
    session_id: uuid.UUID | None,
) -> SubmissionContext | None:
    """Whether the caller's session ``session_id`` is live (False for None), the patient row,
    their live data keys, their clinic's alert parameters, their current course and its
    sessions, baselines and unanswered check-ins (due by ``now``), and their latest answers to
    ``instrument_id`` and ``b12_instrument_id``, in one round trip instead of seven: each
    statement costs more CPU here than the database spends on it (README, submissions bench).
    The patient's part has one row per live key (one, two during a rotation), the patient's
    columns repeated. None: no such patient."""
    rows = await _SUBMISSION_CONTEXT.all(
        connection,
        {
            "patient_id": patient_id,
            "now": now,
            "instrument_id": instrument_id,
            "b12_instrument_id": b12_instrument_id,
            "session_id": session_id,
        },
    )
    patient_rows = [row for row in rows if row.part == _PATIENT_PART]
    if not patient_rows:
        return None
    first = patient_rows[0]
    course = (
        None
        if first.course_id is None
        else CourseRef(first.course_id, first.course_modality, first.course_status)
    )
    return SubmissionContext(
        clinic_id=first.clinic_id,
        status=first.status,
        session_live=bool(first.session_live),
        locale=first.locale,
        care_team_id=first.care_team_id,
        override_document=first.override_document,
        course=course,
        parts=None if course is None else collect_course_parts(rows),
        key_rows=[row for row in patient_rows if row.dek_version is not None],
        prior=PriorResponses(
            instrument_id=instrument_id,
            previous=next((row for row in rows if row.part == _PREVIOUS_PART), None),
            latest_b12=next((row for row in rows if row.part == _LATEST_B12_PART), None),
        ),
    )


_P = _PATIENTS.c
_K = DATA_KEYS.c
_NEWEST_OVERRIDE = (
    select(OVERRIDES.c.document)
    .where(OVERRIDES.c.clinic_id == _P.clinic_id)
    .order_by(*NEWEST_OVERRIDE_FIRST)
    .limit(1)
    .correlate(_PATIENTS)
    .scalar_subquery()
)
_PATIENT_PART: Final = 3  # after the course's parts 0-2 (`sources.course_part_selects`)
_PREVIOUS_PART: Final = 4
_LATEST_B12_PART: Final = 5
_SUBMISSION_CONTEXT: Final = DirectStatement(
    padded_union(
        Part(
            _PATIENT_PART,
            {
                "clinic_id": _P.clinic_id,
                "status": _P.status,
                "session_live": family_live(bindparam("session_id")),
                "locale": _P.locale,
                "care_team_id": _P.care_team_id,
                "override_document": _NEWEST_OVERRIDE,
                "course_id": _COURSES.c.id,
                "course_modality": _COURSES.c.modality,
                "course_status": _COURSES.c.status,
                "dek_version": _K.dek_version,
                "kek_id": _K.kek_id,
                "wrapped_dek": _K.wrapped_dek,
                "retired_at": _K.retired_at,
            },
            (_P.id == bindparam("patient_id"),),
            _PATIENTS.outerjoin(_COURSES, _COURSES.c.id == CURRENT_COURSE_ID).outerjoin(
                DATA_KEYS,
                and_(_K.owner_id == _P.id, _K.wrapped_dek.is_not(None), _K.destroyed_at.is_(None)),
            ),
        ),
        *course_part_selects(CURRENT_COURSE_ID),
        *prior_response_parts(_PREVIOUS_PART, _LATEST_B12_PART),
    )
)


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


async def insert_unless_duplicate(
    connection: AsyncConnection, row: NewResponse, audit: dict[str, Any] | None = None
) -> bool:
    """Insert the response, and ``audit`` (an `audit.service.audit_row`) with it; False, and
    neither stored, if the patient already stored one with this idempotency key.

    ``ON CONFLICT DO NOTHING`` makes a racing retry wait for the first insert and then do nothing
    (PostgreSQL), or queue behind it (SQLite has one writer), so two retries never store twice.
    On PostgreSQL the audit row is inserted by the same statement (a data-modifying CTE that
    inserts only what the response insert returned): one round trip fewer per submission.
    """
    values = msgspec.structs.asdict(row)
    if audit is not None and connection.dialect.name == "postgresql":
        values.update({_AUDIT_PREFIX + name: value for name, value in audit.items()})
        return bool(await _INSERT_AUDITED_POSTGRES.all(connection, values))
    inserted = bool(await _INSERT_UNLESS_DUPLICATE[connection.dialect.name].all(connection, values))
    if inserted and audit is not None:
        await insert_audit_row(connection, audit)
    return inserted


_NEW_RESPONSE_COLUMNS: Final = tuple(NewResponse.__struct_fields__)


def _insert_response(insert: Callable[[Table], Any]) -> Any:
    """The response's insert in a dialect (`postgresql.insert`, `sqlite.insert`): every
    `NewResponse` field a parameter, nothing on a repeated idempotency key, the id returned."""
    return (
        insert(TABLE)
        .values({name: bindparam(name) for name in _NEW_RESPONSE_COLUMNS})
        .on_conflict_do_nothing(index_elements=["patient_id", "idempotency_key"])
        .returning(_c.id)
    )


# Built once: constructing a statement (and its cache key) per call cost more than executing it.
_INSERT_UNLESS_DUPLICATE = {
    "postgresql": DirectStatement(_insert_response(postgresql.insert)),
    "sqlite": DirectStatement(_insert_response(sqlite.insert)),
}
_AUDIT_PREFIX: Final = "audit_"


def _insert_audited_postgres() -> Select[Any]:
    inserted = _insert_response(postgresql.insert).cte("inserted")
    # One audit row per row the insert returned: none for a duplicate.
    audited = (
        AUDIT_EVENTS.insert()
        .from_select(
            list(AUDITED_COLUMNS),
            select(
                *(
                    bindparam(_AUDIT_PREFIX + name, type_=AUDIT_EVENTS.c[name].type)
                    for name in AUDITED_COLUMNS
                )
            ).select_from(inserted),
        )
        .cte("audited")
    )
    return select(inserted.c.id).add_cte(audited)


_INSERT_AUDITED_POSTGRES: Final = DirectStatement(_insert_audited_postgres())


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
