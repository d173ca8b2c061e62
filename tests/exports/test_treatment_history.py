"""The export reads the patients' treatment history as the driver returns it (`source._treatment`):
the same records, in the same order and of the same types, as SQLAlchemy's typed read of the same
rows (the reference below, what the export read before), on both databases."""

import uuid
from datetime import timedelta
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import null, select
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.models.treatment import TreatmentCourse, TreatmentSession
from backend.domain.exports import source
from backend.domain.exports.records import TreatmentCourseRecord, TreatmentSessionRecord
from backend.domain.exports.session_observations import SealedObservations
from tests.exports.world import COURSE_START, build_world
from tests.identity.conftest import MovableClock, runtime_of

_co = source.COURSES.c
_se = source.SESSIONS.c

History = tuple[
    dict[uuid.UUID, list[TreatmentCourseRecord]],
    dict[uuid.UUID, list[TreatmentSessionRecord]],
    dict[uuid.UUID, list[SealedObservations]],
]


async def _typed_history(
    connection: AsyncConnection, ids: list[uuid.UUID], *, observations: bool
) -> History:
    """The reference: every value converted by its column's SQLAlchemy type."""
    courses: dict[uuid.UUID, list[TreatmentCourseRecord]] = {}
    sessions: dict[uuid.UUID, list[TreatmentSessionRecord]] = {}
    sealed: dict[uuid.UUID, list[SealedObservations]] = {}
    known: set[uuid.UUID] = set()
    for course in await connection.execute(
        select(_co.id, _co.patient_id, _co.modality, _co.started_at)
        .where(_co.patient_id.in_(ids), _co.started_at.is_not(None))
        .order_by(_co.patient_id, _co.started_at, _co.id)
    ):
        known.add(course.id)
        courses.setdefault(course.patient_id, []).append(
            TreatmentCourseRecord(
                course_id=course.id,
                modality=source._MODALITY[course.modality],
                started_at=course.started_at,
            )
        )
    for found in await connection.execute(
        select(
            _se.id,
            _se.course_id,
            _se.patient_id,
            _se.modality,
            _se.started_at,
            _se.ended_at,
            _se.n2o_concentration_percent,
            _se.ketamine_mg_per_kg,
            _se.esketamine_mg,
            (_se.observations_ct if observations else null()).label("observations_ct"),
        )
        .where(
            _se.patient_id.in_(ids),
            _se.started_at.is_not(None),
            _se.status.in_(("started", "completed")),
        )
        .order_by(_se.patient_id, _se.started_at, _se.id)
    ):
        row: Any = found
        if row.course_id not in known:
            continue
        dose, unit = source._dose(
            row.modality, row.n2o_concentration_percent, row.ketamine_mg_per_kg, row.esketamine_mg
        )
        sessions.setdefault(row.patient_id, []).append(
            TreatmentSessionRecord(
                session_id=row.id,
                course_id=row.course_id,
                modality=source._MODALITY[row.modality],
                started_at=row.started_at,
                ended_at=row.ended_at,
                dose=dose,
                dose_unit=unit,
                route=source._ROUTE[row.modality],
            )
        )
        if row.observations_ct is not None:
            sealed.setdefault(row.patient_id, []).append(
                SealedObservations(
                    session_id=row.id, course_id=row.course_id, ciphertext=row.observations_ct
                )
            )
    return courses, sessions, sealed


def _session(
    course: TreatmentCourse, modality: str, offset: timedelta, **values: Any
) -> TreatmentSession:
    at = COURSE_START + offset
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "course_id": course.id,
        "patient_id": course.patient_id,
        "clinic_id": course.clinic_id,
        "modality": modality,
        "planned_start_at": at,
        "planned_end_at": at + timedelta(hours=1),
        "started_at": at,
        "ended_at": at + timedelta(minutes=40, microseconds=123),
        "status": "completed",
        "created_at": at,
        "updated_at": at,
    }
    fields.update(values)
    return TreatmentSession(**fields)


async def test_history_read_as_driver_values_equals_the_typed_read(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await build_world(api, clock)
    runtime = runtime_of(api)
    first, second = world.consenting[0], world.consenting[1]
    clinic_id = world.staff["researcher_a"].clinic_id
    assert clinic_id is not None
    async with runtime.require_sessionmaker()() as session:
        # Beside the world's N2O courses: the other modalities and their doses, sessions still
        # running (no end) or never given, and a course that has not started (its sessions are
        # not exported).
        courses = [
            TreatmentCourse(
                id=uuid.uuid4(),
                patient_id=patient.id,
                clinic_id=clinic_id,
                modality=modality,
                protocol_id=f"{modality}-default",
                protocol_version="1",
                started_at=started,
                created_at=COURSE_START,
            )
            for patient, modality, started in (
                (first, "iv_ketamine", COURSE_START + timedelta(days=40, microseconds=5)),
                (second, "esketamine", COURSE_START + timedelta(days=41)),
                (second, "iv_ketamine", None),
            )
        ]
        ketamine, esketamine, not_started = courses
        session.add_all(courses)
        await session.flush()
        session.add_all(
            [
                _session(ketamine, "iv_ketamine", timedelta(days=40), ketamine_mg_per_kg=0.5),
                _session(ketamine, "iv_ketamine", timedelta(days=43), ended_at=None),
                _session(ketamine, "iv_ketamine", timedelta(days=44), status="started"),
                _session(ketamine, "iv_ketamine", timedelta(days=45), ketamine_mg_per_kg=None),
                _session(esketamine, "esketamine", timedelta(days=41), esketamine_mg=56),
                _session(esketamine, "esketamine", timedelta(days=42), status="cancelled"),
                _session(
                    esketamine, "esketamine", timedelta(days=46), status="planned", started_at=None
                ),
                _session(not_started, "iv_ketamine", timedelta(days=47), ketamine_mg_per_kg=1.0),
            ]
        )
        await session.commit()
    ids = [patient.id for patient in world.patients]
    async with runtime.require_sessionmaker()() as session:
        connection = await session.connection()
        for observations in (False, True):
            read = await source._treatment(connection, ids, observations=observations)
            typed = await _typed_history(connection, ids, observations=observations)
            assert read == typed
            # The same types too: UUIDs, aware UTC datetimes and floats encode the same.
            assert msgspec.msgpack.encode(read) == msgspec.msgpack.encode(typed)
            sessions = [s for found in read[1].values() for s in found]
            assert {s.modality for s in sessions} == {"n2o", "ketamine_iv", "esketamine_in"}
            assert any(s.ended_at is None for s in sessions)
            assert not any(s.course_id == not_started.id for s in sessions)
            assert bool(read[2]) is observations
