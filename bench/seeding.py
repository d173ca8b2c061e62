"""Seeding for the in-process benches (`bench_exports`, `bench_history`): a clinic with one
clinician, patients in N2O courses, and their encrypted responses, written by Core bulk inserts
(the setup is not what is measured)."""

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Final, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.config import Settings
from backend.crypto.blind_index import BlindIndexer
from backend.domain.exports.source import COURSES, PATIENTS, SESSIONS
from backend.identity import staff as staff_service
from backend.identity.roles import Role
from backend.keyring.secrets import load_service_secrets
from backend.keyring.service import Keyring, OwnerKeys
from backend.lib.clock import Clock
from backend.lib.ids import uuid7
from backend.state import Runtime

RESPONSES_TABLE: Final = "questionnaire_responses"
SESSION_LENGTH: Final = timedelta(hours=1)


class BenchClinic(NamedTuple):
    clinic_id: uuid.UUID
    clinician_id: uuid.UUID


async def bench_clinic(
    settings: Settings,
    keyring: Keyring,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> BenchClinic:
    """The clinic and the clinician who created its patients, through the identity service."""
    secrets = load_service_secrets(settings)
    runtime = Runtime(
        settings=settings,
        clock=clock,
        kek=keyring.kek,
        secrets=secrets,
        keyring=keyring,
        blind_indexes=BlindIndexer(secrets.blind_index_root),
    )
    async with sessions() as session:
        clinic = await staff_service.create_clinic(
            session, runtime, name="Bench Clinic", totp_required_for_all_staff=False
        )
        staff = await staff_service.create_staff(
            session,
            runtime,
            clinic_id=clinic.id,
            role=Role.CLINICIAN,
            email="bench@example.org",
            name="Bench Clinician",
            created_by=None,
            provision_totp=False,
        )
        await session.commit()
    return BenchClinic(clinic_id=clinic.id, clinician_id=staff.staff.id)


async def insert_patient_in_course(
    connection: AsyncConnection,
    keys: OwnerKeys,
    clinic: BenchClinic,
    *,
    patient_id: uuid.UUID,
    birth: date,
    course_started: datetime,
    session_starts: Sequence[datetime],
    now: datetime,
) -> uuid.UUID:
    """An active, consenting patient in an N2O course with completed one-hour sessions starting
    at ``session_starts``; returns the course's id."""
    await connection.execute(
        PATIENTS.insert().values(
            id=patient_id,
            clinic_id=clinic.clinic_id,
            status="active",
            monitoring_consent=True,
            research_consent=True,
            consent_updated_at=now,
            time_zone="Europe/London",
            locale="en",
            date_of_birth_ciphertext=keys.encrypt(
                table="patients",
                column="date_of_birth_ciphertext",
                row_id=str(patient_id),
                plaintext=birth.isoformat().encode(),
            ),
            created_by=clinic.clinician_id,
            created_at=now,
        )
    )
    course_id = uuid7()
    await connection.execute(
        COURSES.insert().values(
            id=course_id,
            patient_id=patient_id,
            clinic_id=clinic.clinic_id,
            modality="n2o",
            protocol_id="n2o-default",
            protocol_version="1",
            status="active",
            started_at=course_started,
            created_at=now,
        )
    )
    await connection.execute(
        SESSIONS.insert(),
        [
            {
                "id": uuid7(),
                "course_id": course_id,
                "patient_id": patient_id,
                "clinic_id": clinic.clinic_id,
                "modality": "n2o",
                "n2o_concentration_percent": 50,
                "n2o_minutes": 60,
                "planned_start_at": start,
                "planned_end_at": start + SESSION_LENGTH,
                "started_at": start,
                "ended_at": start + SESSION_LENGTH,
                "status": "completed",
                "is_last_in_course": False,
                "created_at": now,
                "updated_at": now,
            }
            for start in session_starts
        ],
    )
    return course_id


def response_row(
    keys: OwnerKeys,
    clinic: BenchClinic,
    *,
    patient_id: uuid.UUID,
    score: Any,
    answers_pt: bytes,
    score_pt: bytes,
    authored: datetime,
    now: datetime,
) -> dict[str, Any]:
    """One stored response (answers and score encrypted as the service stores them)."""
    response_id = uuid7()
    row_id = str(response_id)
    return {
        "id": response_id,
        "clinic_id": clinic.clinic_id,
        "patient_id": patient_id,
        "check_in_id": None,
        "idempotency_key": row_id,
        "instrument_id": score.instrument_id,
        "instrument_version": score.instrument_version,
        "trajectory_key": score.trajectory_key,
        "scorer_version": score.scorer_version,
        "source": "app",
        "authored_at": authored,
        "received_at": now,
        "late": False,
        "answers_ct": keys.encrypt(
            table=RESPONSES_TABLE, column="answers_ct", row_id=row_id, plaintext=answers_pt
        ),
        "score_ct": keys.encrypt(
            table=RESPONSES_TABLE, column="score_ct", row_id=row_id, plaintext=score_pt
        ),
    }
