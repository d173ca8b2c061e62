"""Read-only SQL for the dashboard's pages: plain columns only (times, statuses, doses).

Anything encrypted (scores, answers, notes, names) is read through the owning service, which
decrypts it with the patient's key; these statements never touch ciphertext. All take the
request's connection (same transaction as the audit row that records the read).
"""

import uuid
from datetime import datetime
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Table, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.models.alert import AlertParameterOverride, N2OSessionHold
from backend.db.models.clinic import Clinic
from backend.db.models.patient import Patient
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.staff import StaffMember
from backend.db.models.treatment import CheckIn, TreatmentCourse, TreatmentSession

PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]
RESPONSES: Final = cast(Table, QuestionnaireResponse.__table__)  # type: ignore[attr-defined]
SESSIONS: Final = cast(Table, TreatmentSession.__table__)  # type: ignore[attr-defined]
COURSES: Final = cast(Table, TreatmentCourse.__table__)  # type: ignore[attr-defined]
CHECK_INS: Final = cast(Table, CheckIn.__table__)  # type: ignore[attr-defined]
STAFF: Final = cast(Table, StaffMember.__table__)  # type: ignore[attr-defined]
HOLDS: Final = cast(Table, N2OSessionHold.__table__)  # type: ignore[attr-defined]
OVERRIDES: Final = cast(Table, AlertParameterOverride.__table__)  # type: ignore[attr-defined]
CLINICS: Final = cast(Table, Clinic.__table__)  # type: ignore[attr-defined]

# Check-in states the ladder shows; merged and cancelled ones were never sent on their own.
AnyRow = Row[*tuple[Any, ...]]

LADDER_STATUSES: Final = ("pending", "claimed", "sent", "answered", "missed", "failed")


async def trajectory_keys(connection: AsyncConnection, patient_id: uuid.UUID) -> list[AnyRow]:
    """(trajectory_key, instrument_id, latest instrument_version) the patient has answered."""
    r = RESPONSES.c
    statement = (
        select(r.trajectory_key, r.instrument_id, func.max(r.instrument_version).label("version"))
        .where(r.patient_id == patient_id)
        .group_by(r.trajectory_key, r.instrument_id)
        .order_by(r.instrument_id)
    )
    return list((await connection.execute(statement)).all())


async def sessions_of_patient(connection: AsyncConnection, patient_id: uuid.UUID) -> list[AnyRow]:
    s = SESSIONS.c
    statement = (
        select(
            s.id,
            s.course_id,
            s.modality,
            s.status,
            s.planned_start_at,
            s.planned_end_at,
            s.started_at,
            s.ended_at,
            s.n2o_concentration_percent,
            s.n2o_minutes,
            s.ketamine_mg_per_kg,
            s.esketamine_mg,
        )
        .where(s.patient_id == patient_id, s.status != "cancelled")
        .order_by(s.planned_start_at, s.id)
    )
    return list((await connection.execute(statement)).all())


async def check_ins_of_patient(connection: AsyncConnection, patient_id: uuid.UUID) -> list[AnyRow]:
    c = CHECK_INS.c
    statement = (
        select(
            c.id,
            c.session_id,
            c.label,
            c.status,
            c.priority,
            c.instruments,
            c.due_at,
            c.closes_at,
            c.sent_at,
            c.answered_at,
            c.missed_at,
            c.reminders_sent,
        )
        .where(c.patient_id == patient_id, c.status.in_(LADDER_STATUSES))
        .order_by(c.due_at, c.id)
    )
    return list((await connection.execute(statement)).all())


async def clinic_zone(connection: AsyncConnection, clinic_id: uuid.UUID) -> ZoneInfo:
    """The clinic's time zone (validated when saved; UTC for a clinic that is gone)."""
    statement = select(CLINICS.c.time_zone).where(CLINICS.c.id == clinic_id)
    name = (await connection.execute(statement)).scalar_one_or_none()
    return ZoneInfo(name or "UTC")


async def sessions_between(
    connection: AsyncConnection, clinic_id: uuid.UUID, start: datetime, end: datetime
) -> list[AnyRow]:
    """The clinic's sessions planned to start in [start, end)."""
    s = SESSIONS.c
    statement = (
        select(s.id, s.patient_id, s.modality, s.status, s.planned_start_at, s.n2o_minutes)
        .where(
            s.clinic_id == clinic_id,
            s.status != "cancelled",
            s.planned_start_at >= start,
            s.planned_start_at < end,
        )
        .order_by(s.planned_start_at, s.id)
    )
    return list((await connection.execute(statement)).all())


async def patients_with_missed_check_ins(
    connection: AsyncConnection, clinic_id: uuid.UUID, since: datetime
) -> list[AnyRow]:
    """(patient_id, missed count, latest miss) for misses since ``since``, most recent first."""
    c = CHECK_INS.c
    latest = func.max(c.missed_at).label("latest")
    statement = (
        select(c.patient_id, func.count(distinct(c.id)).label("missed"), latest)
        .where(c.clinic_id == clinic_id, c.status == "missed", c.missed_at >= since)
        .group_by(c.patient_id)
        .order_by(latest.desc())
    )
    return list((await connection.execute(statement)).all())


async def clinic_patients(connection: AsyncConnection, clinic_id: uuid.UUID) -> list[AnyRow]:
    p = PATIENTS.c
    statement = (
        select(p.id, p.status, p.care_team_id, p.created_at)
        .where(p.clinic_id == clinic_id, p.status != "erased")
        .order_by(p.created_at, p.id)
    )
    return list((await connection.execute(statement)).all())


async def clinic_staff(connection: AsyncConnection, clinic_id: uuid.UUID) -> list[AnyRow]:
    s = STAFF.c
    statement = (
        select(
            s.id,
            s.role,
            s.status,
            s.totp_confirmed_at,
            s.created_at,
            s.last_login_at,
            s.name_ciphertext,
        )
        .where(s.clinic_id == clinic_id)
        .order_by(s.role, s.created_at)
    )
    return list((await connection.execute(statement)).all())


async def patients_by_id(connection: AsyncConnection, patient_ids: list[uuid.UUID]) -> list[AnyRow]:
    """Ids and the name ciphertext, for decrypting display names (``FieldSealer``)."""
    if not patient_ids:
        return []
    p = PATIENTS.c
    statement = select(p.id, p.name_ciphertext).where(p.id.in_(patient_ids))
    return list((await connection.execute(statement)).all())


async def active_holds(connection: AsyncConnection, clinic_id: uuid.UUID) -> list[AnyRow]:
    """The clinic's N2O session holds not yet cleared, oldest first."""
    h = HOLDS.c
    statement = (
        select(h.patient_id, h.created_at, h.alert_id)
        .where(h.clinic_id == clinic_id, h.cleared_at.is_(None))
        .order_by(h.created_at)
    )
    return list((await connection.execute(statement)).all())


async def parameter_override_history(
    connection: AsyncConnection, clinic_id: uuid.UUID, limit: int = 20
) -> list[AnyRow]:
    """The clinic's saved alert parameter overrides, newest (the one in force) first."""
    o = OVERRIDES.c
    statement = (
        select(o.id, o.parameter_set, o.version, o.created_at, o.created_by)
        .where(o.clinic_id == clinic_id)
        .order_by(o.created_at.desc(), o.id.desc())
        .limit(limit)
    )
    return list((await connection.execute(statement)).all())
