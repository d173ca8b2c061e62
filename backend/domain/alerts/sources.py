"""SQL reading what a patient's alert timeline is made of: responses, the current treatment course
(its sessions, baselines and check-ins). Read-only, on the caller's connection."""

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, NamedTuple
from typing import cast as typing_cast

from sqlalchemy import (
    CompoundSelect,
    Select,
    Subquery,
    Table,
    bindparam,
    cast,
    literal,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.direct import DirectStatement
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import CheckIn, CourseBaseline, TreatmentCourse, TreatmentSession
from backend.db.types import UuidText
from backend.domain.alerts.rows import AnyRow

RESPONSES: Final = typing_cast(Table, QuestionnaireResponse.__table__)  # type: ignore[attr-defined]
_COURSES: Final = typing_cast(Table, TreatmentCourse.__table__)  # type: ignore[attr-defined]
_SESSIONS: Final = typing_cast(Table, TreatmentSession.__table__)  # type: ignore[attr-defined]
_BASELINES: Final = typing_cast(Table, CourseBaseline.__table__)  # type: ignore[attr-defined]
_CHECK_INS: Final = typing_cast(Table, CheckIn.__table__)  # type: ignore[attr-defined]

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


def _latest_other(instrument_parameter: str, *, but_response: bool = True) -> Subquery:
    """The latest response (by authored time, id) to the instrument named by the parameter;
    ``but_response``: other than the one whose id is the ``response_id`` parameter."""
    conditions = [
        _R.patient_id == bindparam("patient_id"),
        _R.instrument_id == bindparam(instrument_parameter),
    ]
    if but_response:
        conditions.append(_R.id != bindparam("response_id"))
    return (
        select(*_RESPONSE_COLUMNS)
        .where(*conditions)
        .order_by(_R.authored_at.desc(), _R.id.desc())
        .limit(1)
        .subquery()
    )


def _part(number: int, columns: Any) -> Select[Any]:
    return select(literal(number).label("part"), *columns)


# A submission's scope in one statement (`submission_scope`): each part costs the database
# little, but each statement costs ~0.2 ms of CPU here.
_PREVIOUS, _LATEST_B12, _SINCE_PART = 0, 1, 2
_SCOPE_PARTS: Final = (
    _part(_PREVIOUS, _latest_other("instrument_id").c),
    _part(_LATEST_B12, _latest_other("b12_instrument_id").c),
)
_SCOPE: Final = DirectStatement(union_all(*_SCOPE_PARTS))
_SINCE_CONDITIONS: Final = (
    _R.patient_id == bindparam("patient_id"),
    _R.authored_at >= bindparam("since"),
)
_SCOPE_SINCE: Final = DirectStatement(
    union_all(*_SCOPE_PARTS, _part(_SINCE_PART, _RESPONSE_COLUMNS).where(*_SINCE_CONDITIONS))
)
# The course's responses, the bulk of what a submission reads: their ids as text, as the rules
# and the fields' associated data use them (`types.UuidText`).
_ONLY_SINCE: Final = DirectStatement(
    select(type_coerce(_R.id, UuidText()).label("id"), *_RESPONSE_COLUMNS[1:]).where(
        *_SINCE_CONDITIONS
    )
)


def prior_response_parts(previous: int, latest_b12: int) -> tuple["Part", "Part"]:
    """For a `padded_union` read before a submission is stored (`PriorResponses`): the latest
    response to the instrument named by the ``instrument_id`` parameter (part ``previous``) and
    to the one named by ``b12_instrument_id`` (part ``latest_b12``), of the patient whose id is
    the ``patient_id`` parameter. Not stored yet, the submission cannot be either of them."""
    parts = []
    for number, parameter in ((previous, "instrument_id"), (latest_b12, "b12_instrument_id")):
        latest = _latest_other(parameter, but_response=False)
        columns = {column.name: column for column in latest.c}
        parts.append(Part(number, columns, (), latest))
    return parts[0], parts[1]


class PriorResponses(NamedTuple):
    """What `submission_scope` would read as ``previous`` and ``latest_b12``, read by the caller
    before the submission was stored (`prior_response_parts`)."""

    instrument_id: str
    """The instrument ``previous`` answered (the submission's)."""
    previous: AnyRow | None
    latest_b12: AnyRow | None


_RESPONSES_OF: Final = (
    select(*_RESPONSE_COLUMNS)
    .where(_R.patient_id == bindparam("patient_id"))
    .order_by(_R.authored_at, _R.id)
)
CURRENT_COURSE_FIRST: Final = (
    (_COURSES.c.status == "active").desc(),
    _COURSES.c.created_at.desc(),
    _COURSES.c.id.desc(),
)
"""The order in which a patient's courses are current: the active one, else the latest."""
_CURRENT_COURSE: Final = (
    select(_COURSES.c.id, _COURSES.c.modality, _COURSES.c.status)
    .where(_COURSES.c.patient_id == bindparam("patient_id"))
    .order_by(*CURRENT_COURSE_FIRST)
    .limit(1)
)
CURRENT_COURSE_ID: Final = (
    _CURRENT_COURSE.with_only_columns(_COURSES.c.id).correlate(None).scalar_subquery()
)
"""The current course's id of the patient whose id is the ``patient_id`` parameter, for other
statements (never correlated: it reads its own courses, also beside a join with them)."""


async def responses_of(connection: AsyncConnection, patient_id: uuid.UUID) -> list[AnyRow]:
    return list((await connection.execute(_RESPONSES_OF, {"patient_id": patient_id})).all())


class SubmissionScope(NamedTuple):
    previous: AnyRow | None
    """The latest answer to the submission's instrument but the submission itself."""
    latest_b12: AnyRow | None
    """The latest B12 risk answers but the submission itself."""
    since: list[AnyRow]
    """Responses authored at or after ``since`` (none asked: empty). Their ``id`` may be the
    uuid's canonical text rather than a `uuid.UUID` (`history.response_key` takes both)."""


async def submission_scope(
    connection: AsyncConnection,
    patient_id: uuid.UUID,
    *,
    instrument_id: str,
    b12_instrument_id: str,
    response_id: uuid.UUID,
    since: datetime | None,
    prior: PriorResponses | None = None,
) -> SubmissionScope:
    """The latest answer (by authored time, id) to the submission's instrument and to the B12
    risk items other than the submission itself, and, when ``since`` is given, every response
    authored at or after it: one statement. ``prior``: the first two as the caller already read
    them (`prior_response_parts`); then only ``since`` is read, if given."""
    parameters: dict[str, Any] = {"patient_id": patient_id}
    if prior is not None and prior.instrument_id == instrument_id:
        since_rows: list[AnyRow] = []
        if since is not None:
            parameters["since"] = since
            since_rows = list(await _ONLY_SINCE.all(connection, parameters))
        return SubmissionScope(
            previous=prior.previous, latest_b12=prior.latest_b12, since=since_rows
        )
    parameters.update(
        instrument_id=instrument_id, b12_instrument_id=b12_instrument_id, response_id=response_id
    )
    statement = _SCOPE
    if since is not None:
        statement = _SCOPE_SINCE
        parameters["since"] = since
    previous = latest_b12 = None
    rows: list[AnyRow] = []
    for row in await statement.all(connection, parameters):
        if row.part == _PREVIOUS:
            previous = row
        elif row.part == _LATEST_B12:
            latest_b12 = row
        else:
            rows.append(row)
    return SubmissionScope(previous=previous, latest_b12=latest_b12, since=rows)


async def responses_by_id(
    connection: AsyncConnection, patient_id: uuid.UUID, ids: list[uuid.UUID]
) -> list[AnyRow]:
    statement = select(*_RESPONSE_COLUMNS).where(_R.patient_id == patient_id, _R.id.in_(ids))
    return list((await connection.execute(statement)).all())


class CourseRef(NamedTuple):
    """The patient's current course: what `current_course` reads (a submission reads the same
    with its context, `responses.repository.submission_context`)."""

    id: uuid.UUID
    modality: str
    status: str


async def current_course(connection: AsyncConnection, patient_id: uuid.UUID) -> CourseRef | None:
    """The active course, else the latest one (a course that ended is still monitored after)."""
    row = (await connection.execute(_CURRENT_COURSE, {"patient_id": patient_id})).first()
    return None if row is None else CourseRef(row.id, row.modality, row.status)


class CourseParts(NamedTuple):
    sessions: list[AnyRow]
    """The course's sessions but cancelled ones, by planned start."""
    baselines: list[AnyRow]
    """The course's baseline responses (instrument_id, response_id)."""
    unanswered: list[AnyRow]
    """Check-ins sent (or missed) and not answered, due by ``now``, by due time."""


async def course_parts(
    connection: AsyncConnection, course_id: uuid.UUID, now: datetime
) -> CourseParts:
    """A course's sessions, baselines and unanswered check-ins in one statement (each statement
    costs ~0.2 ms of CPU here; every evaluation reads all three)."""
    parameters = {"course_id": course_id, "now": now}
    return collect_course_parts(await _COURSE_PARTS.all(connection, parameters))


def collect_course_parts(rows: Iterable[AnyRow]) -> CourseParts:
    """`CourseParts` from the rows of `course_part_selects` (parts 0, 1 and 2; others ignored)."""
    parts: tuple[list[AnyRow], list[AnyRow], list[AnyRow]] = ([], [], [])
    for row in rows:
        if row.part in (0, 1, 2):
            parts[row.part].append(row)
    sessions, baselines, unanswered = parts
    sessions.sort(key=lambda r: (r.planned_start_at, r.id))
    unanswered.sort(key=lambda r: (r.due_at, r.id))
    return CourseParts(sessions=sessions, baselines=baselines, unanswered=unanswered)


class Part(NamedTuple):
    """One SELECT of a `padded_union`: its number, its labelled columns, where it reads."""

    number: int
    columns: dict[str, Any]
    where: tuple[Any, ...]
    from_: Any = None


def padded_union(*parts: Part) -> CompoundSelect[Any]:
    """One UNION ALL of differently shaped SELECTs: every part has every part's columns, its
    missing ones as typed NULLs (PostgreSQL will not unite an untyped NULL with a uuid or a
    timestamp), and a ``part`` column saying which part a row came from. One statement instead
    of several: each costs more CPU here than the database spends on it."""
    columns: dict[str, Any] = {}
    for part in parts:
        for name, column in part.columns.items():
            columns.setdefault(name, column)

    def select_part(part: Part) -> Select[Any]:
        statement = select(
            literal(part.number).label("part"),
            *(
                (part.columns[name] if name in part.columns else cast(null(), column.type)).label(
                    name
                )
                for name, column in columns.items()
            ),
        )
        if part.from_ is not None:
            statement = statement.select_from(part.from_)
        return statement.where(*part.where)

    return union_all(*(select_part(part) for part in parts))


def course_part_selects(course_id: Any) -> tuple[Part, Part, Part]:
    """A course's sessions (part 0), baselines (1) and check-ins sent or missed, unanswered and
    due by the ``now`` parameter (2), for the course whose id is ``course_id`` (a bind or a
    correlated subquery)."""
    s, b, c = _SESSIONS.c, _BASELINES.c, _CHECK_INS.c
    session_columns = {
        "id": s.id,
        "modality": s.modality,
        "status": s.status,
        "planned_start_at": s.planned_start_at,
        "planned_end_at": s.planned_end_at,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "n2o_concentration_percent": s.n2o_concentration_percent,
        "n2o_minutes": s.n2o_minutes,
    }
    baseline_columns = {"instrument_id": b.instrument_id, "response_id": b.response_id}
    check_in_columns = {"id": c.id, "session_id": c.session_id, "due_at": c.due_at}
    return (
        Part(0, session_columns, (s.course_id == course_id, s.status != "cancelled")),
        Part(1, baseline_columns, (b.course_id == course_id,)),
        Part(
            2,
            check_in_columns,
            (
                c.course_id == course_id,
                # Literal binds, not an expanding list: `DirectStatement` runs this as it is.
                c.status.in_([literal(status) for status in UNANSWERED_CHECK_IN_STATUSES]),
                c.answered_at.is_(None),
                c.due_at <= bindparam("now"),
            ),
        ),
    )


_COURSE_PARTS: Final = DirectStatement(padded_union(*course_part_selects(bindparam("course_id"))))


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
