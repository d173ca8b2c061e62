"""Treatment courses and sessions, and the check-in rows they imply (the unit of work; never
commits).

Every change to a session (recorded, rescheduled, cancelled, completed) re-plans the check-ins
of every session of its course, in the same transaction: the changed session's own ladder, the
session before it (whose "until the next session" steps depend on it), and the course's first
session (the baseline) all follow from the course's final state. The pure planner
(`backend.domain.check_ins.replanning.replan`) decides; rows that reached the patient (claimed,
sent, answered) or closed (missed) are never touched, so nothing is re-issued, and re-running the
same change writes nothing (the decision depends only on the final state).

Every change holds the patient's row first (`hold_patient`), as a consent change and a schedule
change do, and reads the patient's status under it: a session recorded while the patient
withdraws waits for the withdrawal and plans nothing, instead of planning check-ins for a patient
who has just withdrawn (the timer would drop them, but they would stand as rows).
"""

import hashlib
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Final, cast

import msgspec
from sqlalchemy import Table
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.patient import Patient
from backend.db.models.treatment import PatientQuietHours, TreatmentCourse, TreatmentSession
from backend.domain.check_ins import repository
from backend.domain.check_ins.clinic_protocols import clinic_protocol, course_protocol
from backend.domain.check_ins.plans import PatientSchedulingContext, PlannedSession, PlanningError
from backend.domain.check_ins.protocols import MODALITIES, Modality
from backend.domain.check_ins.quiet_hours import QuietHours
from backend.domain.check_ins.replanning import apply_decision, replan, replan_for_patient
from backend.domain.fallback import repository as fallbacks
from backend.domain.fallback.plan import MONITORING_STOPPED as FALLBACK_MONITORING_STOPPED
from backend.domain.sessions.schemas import (
    Observations,
    ObservationsInput,
    PatientSchedule,
    SessionCompletion,
    SessionInput,
    SessionReschedule,
    SessionView,
)
from backend.keyring.service import Keyring, OwnerKeys
from backend.lib.errors import Conflict, InvalidInput, NotFound
from backend.lib.ids import uuid7
from backend.lib.preconditions import lock_row, require_current, require_version

SESSIONS_TABLE = "treatment_sessions"
DEFAULT_QUIET_HOURS = QuietHours()
# Longer than any N2O, infusion or esketamine visit (esketamine: >= 2 h observation): a typo.
MAX_SESSION_LENGTH = timedelta(hours=10)
PLAUSIBLE_SPAN = timedelta(days=730)
# Observation times, around the session they belong to: a pre-dose blood pressure may be taken
# well before the start; side effects are acute (the checklist asks at +2 h to +24 h), so days
# later is a typo or another session's.
PRE_SESSION_READINGS = timedelta(hours=12)
AFTER_SESSION_OBSERVATIONS = timedelta(hours=72)
CLOCK_SKEW = timedelta(minutes=5)
_PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]


class ReplanSummary(msgspec.Struct, frozen=True, kw_only=True):
    inserted: int = 0
    updated: int = 0
    cancelled: int = 0


# --- patients ----------------------------------------------------------------------------------


async def hold_patient(session: AsyncSession, patient_id: uuid.UUID) -> None:
    """Lock the patient's row to the end of the transaction (PostgreSQL; SQLite has one writer).
    Taken before any session or check-in row, the order every re-plan and consent change uses,
    so two of them wait for each other instead of deadlocking."""
    await lock_row(session, _PATIENTS, patient_id)


async def get_patient(
    session: AsyncSession, patient_id: uuid.UUID, *, fresh: bool = False
) -> Patient:
    """The patient (NotFound when erased). ``fresh``: the row's values as the database has them
    now (under `hold_patient`), not a copy this session loaded before it waited for the lock."""
    statement = select(Patient).where(col(Patient.id) == patient_id)
    if fresh:
        statement = statement.execution_options(populate_existing=True)
    patient = (await session.exec(statement)).first()
    if patient is None or patient.status == "erased":
        raise NotFound("no such patient")
    return patient


async def quiet_hours_of(session: AsyncSession, patient_id: uuid.UUID) -> QuietHours:
    row = await session.get(PatientQuietHours, patient_id)
    if row is None:
        return DEFAULT_QUIET_HOURS
    return QuietHours(start=time.fromisoformat(row.starts), end=time.fromisoformat(row.ends))


async def scheduling_context(session: AsyncSession, patient: Patient) -> PatientSchedulingContext:
    connection = await session.connection()
    return PatientSchedulingContext(
        patient_id=str(patient.id),
        time_zone=patient.time_zone,
        quiet_hours=await quiet_hours_of(session, patient.id),
        last_answered_at=await repository.last_answered(connection, patient.id),
    )


# --- courses -----------------------------------------------------------------------------------


async def active_course(
    session: AsyncSession,
    patient: Patient,
    modality: Modality,
    *,
    staff_id: uuid.UUID | None,
    starts_at: datetime,
    now: datetime,
) -> TreatmentCourse:
    """The patient's active course of this modality; a new one (with the clinic's current
    protocol) when there is none.

    A session after the one a clinician declared the course's last, once that one was held,
    starts a new course (with its own baseline B0); the declared course ends and its follow-up
    stands. To extend a course instead, name it (`SessionInput.course_id`)."""
    statement = select(TreatmentCourse).where(
        col(TreatmentCourse.patient_id) == patient.id,
        col(TreatmentCourse.modality) == modality,
        col(TreatmentCourse.status) == "active",
    )
    course = (await session.exec(statement.order_by(col(TreatmentCourse.created_at)))).first()
    if course is not None:
        live = [s for s in await course_sessions(session, course.id) if s.status != "cancelled"]
        last = live[-1] if live else None
        declared_over = (
            last is not None
            and last.is_last_in_course
            and last.status == "completed"
            and starts_at > effective_start(last)
        )
        if not declared_over:
            return course
        await end_course(session, patient.id, course.id, now=now)
    protocol = await clinic_protocol(await session.connection(), patient.clinic_id, modality)
    course = TreatmentCourse(
        id=uuid7(),
        patient_id=patient.id,
        clinic_id=patient.clinic_id,
        modality=modality,
        protocol_id=protocol.id,
        protocol_version=protocol.version,
        created_by=staff_id,
        created_at=now,
    )
    session.add(course)
    await session.flush()
    return course


async def get_course(
    session: AsyncSession, patient_id: uuid.UUID, course_id: uuid.UUID
) -> TreatmentCourse:
    course = await session.get(TreatmentCourse, course_id)
    if course is None or course.patient_id != patient_id:
        raise NotFound("no such course")
    return course


class EndedCourse(msgspec.Struct, frozen=True, kw_only=True):
    course: TreatmentCourse
    last_session_id: uuid.UUID | None
    cancelled_session_ids: tuple[uuid.UUID, ...]


async def end_course(
    session: AsyncSession, patient_id: uuid.UUID, course_id: uuid.UUID, *, now: datetime
) -> EndedCourse:
    """End the course: sessions still planned for later are cancelled (their unsent check-ins
    with them), and the last session left becomes the course's last, so the protocol's follow-up
    after the last session is planned from it. Ending an ended course changes nothing.

    A planned session whose start has passed is kept: it was most likely held and not yet
    recorded as completed, and its check-ins may already have gone out."""
    await hold_patient(session, patient_id)
    course = await get_course(session, patient_id, course_id)
    rows = await course_sessions(session, course.id)
    if course.status == "ended":
        live = [s for s in rows if s.status != "cancelled"]
        last_id = max(live, key=_sort_key).id if live else None
        return EndedCourse(course=course, last_session_id=last_id, cancelled_session_ids=())
    cancelled = []
    for row in rows:
        if row.status == "planned" and row.planned_start_at > now:
            row.status, row.cancelled_at, row.updated_at = "cancelled", now, now
            session.add(row)
            cancelled.append(row.id)
    live = [s for s in rows if s.status != "cancelled"]
    last = max(live, key=_sort_key) if live else None
    for s in live:
        if s.is_last_in_course != (s is last):
            s.is_last_in_course = s is last
            s.updated_at = now
            session.add(s)
    course.status = "ended"
    course.ended_at = now
    session.add(course)
    await replan_course(session, course, now=now)
    return EndedCourse(
        course=course,
        last_session_id=None if last is None else last.id,
        cancelled_session_ids=tuple(cancelled),
    )


async def list_courses(session: AsyncSession, patient_id: uuid.UUID) -> list[TreatmentCourse]:
    statement = (
        select(TreatmentCourse)
        .where(col(TreatmentCourse.patient_id) == patient_id)
        .order_by(col(TreatmentCourse.created_at), col(TreatmentCourse.id))
    )
    return list((await session.exec(statement)).all())


# --- sessions ----------------------------------------------------------------------------------


def _check_dose(data: SessionInput) -> None:
    given = {
        "n2o": data.n2o_concentration_percent is not None,
        "iv_ketamine": data.ketamine_mg_per_kg is not None,
        "esketamine": data.esketamine_mg is not None,
    }
    if not given[data.modality] or sum(given.values()) != 1:
        raise InvalidInput(
            "give the dose of the session's modality only: n2o_concentration_percent, "
            "ketamine_mg_per_kg or esketamine_mg"
        )


def _aware(value: datetime, pointer: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput(f"{pointer} must carry a time zone offset (RFC 3339)")
    return value


def _plausible(value: datetime, pointer: str, now: datetime) -> datetime:
    """An aware time within two years of now: further is a typo (and a ladder planned from the
    year 9999 would overflow)."""
    _aware(value, pointer)
    if abs(value - now) > PLAUSIBLE_SPAN:
        raise InvalidInput(f"{pointer} must lie within two years of today")
    return value


async def record_session(
    session: AsyncSession,
    keyring: Keyring,
    *,
    patient_id: uuid.UUID,
    data: SessionInput,
    staff_id: uuid.UUID | None,
    now: datetime,
) -> TreatmentSession:
    """A new planned session and its check-ins (same transaction)."""
    await hold_patient(session, patient_id)
    patient = await get_patient(session, patient_id)
    start = _plausible(data.planned_start, "/planned_start", now)
    _check_dose(data)
    if data.course_id is not None:
        course = await get_course(session, patient.id, data.course_id)
        if course.modality != data.modality or course.status != "active":
            raise Conflict("the course is of another modality or has ended")
    else:
        course = await active_course(
            session, patient, data.modality, staff_id=staff_id, starts_at=start, now=now
        )
    row = TreatmentSession(
        id=uuid7(),
        course_id=course.id,
        patient_id=patient.id,
        clinic_id=patient.clinic_id,
        modality=data.modality,
        planned_start_at=start,
        planned_end_at=start + timedelta(minutes=data.minutes),
        is_last_in_course=data.last_in_course,
        created_by=staff_id,
        created_at=now,
        updated_at=now,
        n2o_concentration_percent=data.n2o_concentration_percent,
        n2o_minutes=data.minutes if data.modality == "n2o" else None,
        ketamine_mg_per_kg=data.ketamine_mg_per_kg,
        ketamine_minutes=data.minutes if data.modality == "iv_ketamine" else None,
        esketamine_mg=data.esketamine_mg,
    )
    if data.notes is not None:
        keys = await keyring.owner_keys(session, patient.id, active_only=True)
        row.notes_ct = _seal(keys, row.id, "notes_ct", data.notes.encode("utf-8"))
    session.add(row)
    await session.flush()
    await replan_course(session, course, now=now)
    return row


async def get_session(
    session: AsyncSession,
    patient_id: uuid.UUID,
    session_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> TreatmentSession:
    # for_update: PostgreSQL locks the row until the transaction ends (SQLite's BEGIN IMMEDIATE
    # already serialises writers), so a version checked under it cannot change before the write.
    # NO KEY UPDATE, as `lock_row`: the timer's foreign-key checks of check_ins.session_id must
    # not wait for it while this transaction waits for a check-in the timer holds.
    row = await session.get(
        TreatmentSession,
        session_id,
        with_for_update={"key_share": True} if for_update else None,
        # The locked read's values, not a copy this session may already hold.
        populate_existing=for_update,
    )
    if row is None or row.patient_id != patient_id:
        raise NotFound("no such session")
    return row


async def reschedule_session(
    session: AsyncSession,
    *,
    patient_id: uuid.UUID,
    session_id: uuid.UUID,
    data: SessionReschedule,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> TreatmentSession:
    """Move a planned session; only its not-yet-sent check-ins move with it.

    ``if_match``: the versions the caller accepts (`session_version`); PreconditionFailed (412)
    when the session changed since, so a stale copy of its times is never saved."""
    await hold_patient(session, patient_id)
    row = await get_session(session, patient_id, session_id, for_update=True)
    # Read under the row's lock (for_update), so the version cannot change before the write.
    require_version(if_match, session_version(row), "the session")
    if row.status != "planned":
        raise Conflict(f"a {row.status} session cannot be rescheduled")
    if (await _course_of(session, row)).status == "ended":
        raise Conflict("the session's course has ended; plan new sessions in a new course")
    start = _plausible(data.planned_start, "/planned_start", now)
    length = (
        timedelta(minutes=data.minutes)
        if data.minutes is not None
        else row.planned_end_at - row.planned_start_at
    )
    row.planned_start_at, row.planned_end_at = start, start + length
    if data.minutes is not None:
        if row.n2o_minutes is not None:
            row.n2o_minutes = data.minutes
        if row.ketamine_minutes is not None:
            row.ketamine_minutes = data.minutes
    if data.last_in_course is not None:
        row.is_last_in_course = data.last_in_course
    row.updated_at = now
    session.add(row)
    await session.flush()
    await replan_course(session, await _course_of(session, row), now=now)
    return row


async def cancel_session(
    session: AsyncSession, *, patient_id: uuid.UUID, session_id: uuid.UUID, now: datetime
) -> TreatmentSession:
    """Cancel a planned session: its unsent check-ins are cancelled; sent ones stand."""
    await hold_patient(session, patient_id)
    row = await get_session(session, patient_id, session_id)
    if row.status == "cancelled":
        return row  # cancelling twice is cancelling once
    if row.status != "planned":
        raise Conflict(f"a {row.status} session cannot be cancelled")
    row.status, row.cancelled_at, row.updated_at = "cancelled", now, now
    session.add(row)
    await session.flush()
    await replan_course(session, await _course_of(session, row), now=now)
    return row


async def complete_session(
    session: AsyncSession,
    keyring: Keyring,
    *,
    patient_id: uuid.UUID,
    session_id: uuid.UUID,
    data: SessionCompletion,
    now: datetime,
) -> TreatmentSession:
    """Record the session as held, with its actual times; its ladder re-times from the end."""
    await hold_patient(session, patient_id)
    row = await get_session(session, patient_id, session_id)
    if row.status == "cancelled":
        raise Conflict("a cancelled session cannot be completed")
    started = _plausible(data.started_at, "/started_at", now)
    ended = _aware(data.ended_at, "/ended_at")
    if not started < ended <= started + MAX_SESSION_LENGTH:
        raise InvalidInput("a session must end after it starts, within 10 hours")
    if ended > now + timedelta(minutes=5):
        raise InvalidInput("a session cannot be completed before it ends")
    row.started_at, row.ended_at, row.status = started, ended, "completed"
    minutes = max(1, round((ended - started).total_seconds() / 60))
    if row.modality == "n2o" and row.n2o_minutes is not None:
        row.n2o_minutes = minutes
    if row.modality == "iv_ketamine" and row.ketamine_minutes is not None:
        row.ketamine_minutes = minutes
    await _write_observations(
        session,
        keyring,
        row,
        ObservationsInput(
            observations=data.observations,
            discharged_at=data.discharged_at,
            rems_monitoring_completed=data.rems_monitoring_completed,
            notes=data.notes,
        ),
        now=now,
    )
    await session.flush()
    await replan_course(session, await _course_of(session, row), now=now)
    return row


def session_version(row: TreatmentSession) -> str:
    """An opaque version of what a clinician sees of the session, for ``If-Match``.

    A hash of the stored state, not of the clock alone: every write of observations or notes
    seals them with a fresh nonce, and every other field the view shows is hashed itself, so two
    writes in the same instant (the clock's resolution) that change anything still differ."""

    def instant(value: datetime | None) -> str:
        return "" if value is None else value.astimezone(UTC).isoformat()

    digest = hashlib.sha256()
    for part in (
        row.status.encode(),
        instant(row.planned_start_at).encode(),
        instant(row.planned_end_at).encode(),
        instant(row.started_at).encode(),
        instant(row.ended_at).encode(),
        instant(row.discharged_at).encode(),
        repr(row.rems_monitoring_completed).encode(),
        repr(row.is_last_in_course).encode(),
        # Doses: a rescheduled length changes the minutes beside the planned end.
        repr(
            (
                row.n2o_concentration_percent,
                row.n2o_minutes,
                row.ketamine_mg_per_kg,
                row.ketamine_minutes,
                row.esketamine_mg,
            )
        ).encode(),
        row.observations_ct or b"",
        row.notes_ct or b"",
        instant(row.updated_at).encode(),
    ):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.hexdigest()[:32]


async def record_observations(
    session: AsyncSession,
    keyring: Keyring,
    *,
    patient_id: uuid.UUID,
    session_id: uuid.UUID,
    data: ObservationsInput,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> TreatmentSession:
    """Observations entered during or after the session (given fields replace stored ones).

    ``if_match``: the versions the caller accepts (`session_version`); when the session changed
    since, nothing is written and PreconditionFailed (412) tells the caller to read it again,
    so one clinician's entry is never silently replaced by another's stale copy."""
    row = await get_session(session, patient_id, session_id, for_update=True)
    # Read under the row's lock (for_update), so the version cannot change before the write.
    require_version(if_match, session_version(row), "the session")
    if row.status == "cancelled":
        raise Conflict("a cancelled session has no observations")
    await _write_observations(session, keyring, row, data, now=now)
    await session.flush()
    return row


def _check_observations(observations: Observations, row: TreatmentSession, now: datetime) -> None:
    """Every time in the observations lies around this session and not in the future; values
    the schema cannot check alone (a systolic pressure above the diastolic, a time without its
    rating) are consistent. Messages name the field, never a value."""
    start, end = effective_start(row), effective_end(row)
    latest = min(end + AFTER_SESSION_OBSERVATIONS, now + CLOCK_SKEW)

    def within(at: datetime, pointer: str, earliest: datetime, what: str) -> None:
        _aware(at, pointer)
        if at > now + CLOCK_SKEW:
            raise InvalidInput(f"{pointer} lies in the future")
        if not earliest <= at <= latest:
            raise InvalidInput(f"{pointer} must lie {what} and 72 hours after the session's end")

    for i, reading in enumerate(observations.blood_pressure):
        pointer = f"/observations/blood_pressure/{i}"
        within(
            reading.at,
            f"{pointer}/at",
            start - PRE_SESSION_READINGS,
            "between 12 hours before the session's start",
        )
        if reading.systolic <= reading.diastolic:
            raise InvalidInput(f"{pointer}: the systolic pressure must be above the diastolic")
    ratings = (
        ("cadss6", observations.cadss6, observations.cadss6_at),
        ("sedation_moaas", observations.sedation_moaas, observations.sedation_moaas_at),
    )
    for field, rated, at in ratings:
        if at is None:
            continue
        if rated is None:
            raise InvalidInput(f"/observations/{field}_at is given without /observations/{field}")
        within(at, f"/observations/{field}_at", start, "between the session's start")
    for i, effect in enumerate(observations.side_effects):
        within(
            effect.onset_at,
            f"/observations/side_effects/{i}/onset_at",
            start,
            "between the session's start",
        )


async def _write_observations(
    session: AsyncSession,
    keyring: Keyring,
    row: TreatmentSession,
    data: ObservationsInput,
    *,
    now: datetime,
) -> None:
    # Checked before anything changes: a bad field leaves the session as it was.
    if data.observations is not None:
        _check_observations(data.observations, row, now)
    if data.discharged_at is not None:
        row.discharged_at = _plausible(data.discharged_at, "/discharged_at", now)
    if data.rems_monitoring_completed is not None:
        row.rems_monitoring_completed = data.rems_monitoring_completed
    if data.observations is not None or data.notes is not None:
        keys = await keyring.owner_keys(session, row.patient_id, active_only=True)
        if data.observations is not None:
            plaintext = msgspec.msgpack.encode(data.observations)
            row.observations_ct = _seal(keys, row.id, "observations_ct", plaintext)
        if data.notes is not None:
            row.notes_ct = _seal(keys, row.id, "notes_ct", data.notes.encode("utf-8"))
    row.updated_at = now
    session.add(row)


def _seal(keys: OwnerKeys, row_id: uuid.UUID, column: str, plaintext: bytes) -> bytes:
    return keys.encrypt(
        table=SESSIONS_TABLE, column=column, row_id=str(row_id), plaintext=plaintext
    )


async def list_sessions(session: AsyncSession, patient_id: uuid.UUID) -> list[TreatmentSession]:
    statement = (
        select(TreatmentSession)
        .where(col(TreatmentSession.patient_id) == patient_id)
        .order_by(col(TreatmentSession.planned_start_at), col(TreatmentSession.id))
    )
    return list((await session.exec(statement)).all())


async def session_views(
    session: AsyncSession, keyring: Keyring, rows: list[TreatmentSession]
) -> list[SessionView]:
    """Decrypted views (callers are authorised and audit the read)."""
    views = []
    keys_by_patient: dict[uuid.UUID, OwnerKeys] = {}
    for row in rows:
        observations, notes = None, None
        if row.observations_ct is not None or row.notes_ct is not None:
            if row.patient_id not in keys_by_patient:
                keys_by_patient[row.patient_id] = await keyring.owner_keys(session, row.patient_id)
            keys = keys_by_patient[row.patient_id]
            if row.observations_ct is not None:
                observations = msgspec.msgpack.decode(
                    _open(keys, row.id, "observations_ct", row.observations_ct), type=Observations
                )
            if row.notes_ct is not None:
                notes = _open(keys, row.id, "notes_ct", row.notes_ct).decode("utf-8")
        views.append(
            SessionView(
                id=row.id,
                course_id=row.course_id,
                patient_id=row.patient_id,
                modality=modality_of(row.modality),
                status=row.status,
                planned_start=row.planned_start_at,
                planned_end=row.planned_end_at,
                started_at=row.started_at,
                ended_at=row.ended_at,
                last_in_course=row.is_last_in_course,
                n2o_concentration_percent=row.n2o_concentration_percent,
                n2o_minutes=row.n2o_minutes,
                ketamine_mg_per_kg=row.ketamine_mg_per_kg,
                ketamine_minutes=row.ketamine_minutes,
                esketamine_mg=row.esketamine_mg,
                discharged_at=row.discharged_at,
                rems_monitoring_completed=row.rems_monitoring_completed,
                observations=observations,
                notes=notes,
                version=session_version(row),
            )
        )
    return views


def _open(keys: OwnerKeys, row_id: uuid.UUID, column: str, blob: bytes) -> bytes:
    return keys.decrypt(table=SESSIONS_TABLE, column=column, row_id=str(row_id), blob=bytes(blob))


def modality_of(value: str) -> Modality:
    for modality in MODALITIES:
        if value == modality:
            return modality
    raise ValueError(value)  # pragma: no cover - the table's CHECK constraint forbids it


# --- re-planning -------------------------------------------------------------------------------


def effective_start(row: TreatmentSession) -> datetime:
    return row.started_at or row.planned_start_at


def effective_end(row: TreatmentSession) -> datetime:
    return row.ended_at or row.planned_end_at


def _sort_key(row: TreatmentSession) -> tuple[datetime, str]:
    return effective_start(row), str(row.id)


async def _course_of(session: AsyncSession, row: TreatmentSession) -> TreatmentCourse:
    course = await session.get(TreatmentCourse, row.course_id)
    assert course is not None  # foreign key
    return course


async def course_sessions(session: AsyncSession, course_id: uuid.UUID) -> list[TreatmentSession]:
    statement = select(TreatmentSession).where(col(TreatmentSession.course_id) == course_id)
    return sorted((await session.exec(statement)).all(), key=_sort_key)


def planned_sessions(course: TreatmentCourse, rows: list[TreatmentSession]) -> list[PlannedSession]:
    """The planner's view of every session of a course, from the course's current state."""
    rows = sorted(rows, key=_sort_key)
    live = [r for r in rows if r.status != "cancelled"]
    course_start = effective_start(live[0]) if live else None
    last_live = live[-1] if live else None
    planned = []
    for row in rows:
        cancelled = row.status == "cancelled"
        index = next((i for i, r in enumerate(live) if r.id == row.id), None)
        following = live[index + 1] if index is not None and index + 1 < len(live) else None
        start = effective_start(row)
        planned.append(
            PlannedSession(
                id=str(row.id),
                course_id=str(course.id),
                patient_id=str(row.patient_id),
                modality=modality_of(row.modality),
                starts_at=start,
                ends_at=effective_end(row),
                course_started_at=min(start, course_start) if course_start else start,
                is_first_in_course=index == 0,
                is_last_in_course=bool(
                    not cancelled
                    and last_live is not None
                    and row.id == last_live.id
                    and (row.is_last_in_course or course.status == "ended")
                ),
                next_session_starts_at=effective_start(following) if following else None,
                cancelled=cancelled,
            )
        )
    return planned


async def replan_course(
    session: AsyncSession, course: TreatmentCourse, *, now: datetime
) -> ReplanSummary:
    """Bring every check-in of the course's sessions in line with the course's current state."""
    await session.flush()
    patient = await get_patient(session, course.patient_id, fresh=True)
    rows = await course_sessions(session, course.id)
    live = [r for r in rows if r.status != "cancelled"]
    course.started_at = effective_start(live[0]) if live else None
    session.add(course)
    if patient.status in repository.MONITORING_STOPPED:
        # Withdrawn: sessions are still recorded, but nothing is planned to ask them; a renewed
        # consent plans every course again (`resume_monitoring`).
        await session.flush()
        return ReplanSummary()
    connection = await session.connection()
    context = await scheduling_context(session, patient)
    protocol = await course_protocol(
        connection,
        course.clinic_id,
        modality_of(course.modality),
        course.protocol_id,
        course.protocol_version,
    )
    existing = await repository.existing_for_patient(connection, patient.id)
    summary = ReplanSummary()
    for planned in planned_sessions(course, rows):
        try:
            decision = replan(existing, planned, protocol, context, now=now)
        except PlanningError as error:
            raise InvalidInput(str(error)) from None
        if decision.is_empty:
            continue
        await repository.apply(connection, decision, clinic_id=course.clinic_id, now=now)
        existing = apply_decision(existing, decision)
        summary = ReplanSummary(
            inserted=summary.inserted + len(decision.insert),
            updated=summary.updated + len(decision.update),
            cancelled=summary.cancelled + len(decision.cancel),
        )
    await session.flush()
    return summary


def schedule_of(patient: Patient, quiet_hours: QuietHours) -> PatientSchedule:
    return PatientSchedule(
        time_zone=patient.time_zone,
        quiet_hours_start=quiet_hours.start.strftime("%H:%M"),
        quiet_hours_end=quiet_hours.end.strftime("%H:%M"),
    )


async def patient_schedule(session: AsyncSession, patient_id: uuid.UUID) -> PatientSchedule:
    patient = await get_patient(session, patient_id)
    return schedule_of(patient, await quiet_hours_of(session, patient_id))


async def change_patient_schedule(
    session: AsyncSession,
    *,
    patient_id: uuid.UUID,
    time_zone: str | None,
    quiet_hours: QuietHours | None,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> tuple[Patient, QuietHours, int]:
    """A new time zone and/or quiet hours: every not-yet-sent check-in is re-placed.

    Returns the patient, their quiet hours and how many check-ins changed. The patient's
    ``time_zone`` column is identity's; it is written here because a change of it must re-plan
    in the same transaction (identity's own update path should call this function).
    PreconditionFailed if ``if_match`` (entity tags of a `PatientSchedule`) no longer names the
    schedule in force."""
    # Always under the patient's lock: the check, the write and the re-planning see one state.
    await hold_patient(session, patient_id)
    if if_match is not None:
        current = await patient_schedule(session, patient_id)
        require_current(if_match, current, "the patient's schedule")
    patient = await get_patient(session, patient_id)
    if time_zone is not None:
        patient.time_zone = time_zone
        session.add(patient)
    if quiet_hours is not None:
        row = await session.get(PatientQuietHours, patient_id)
        starts, ends = quiet_hours.start.strftime("%H:%M"), quiet_hours.end.strftime("%H:%M")
        if row is None:
            row = PatientQuietHours(patient_id=patient_id, starts=starts, ends=ends, updated_at=now)
        else:
            row.starts, row.ends, row.updated_at = starts, ends, now
        session.add(row)
    await session.flush()
    context = await scheduling_context(session, patient)
    connection = await session.connection()
    existing = await repository.existing_for_patient(connection, patient.id)
    try:
        decision = replan_for_patient(existing, context)
    except PlanningError as error:
        raise InvalidInput(str(error)) from None
    await repository.apply(connection, decision, clinic_id=patient.clinic_id, now=now)
    changed = len(decision.insert) + len(decision.update) + len(decision.cancel)
    return patient, context.quiet_hours, changed


async def cancel_unsent_check_ins(
    session: AsyncSession, patient_id: uuid.UUID, *, now: datetime
) -> int:
    """The patient's monitoring stopped (erased): none of their unsent check-ins may go out.
    Returns how many were cancelled."""
    await session.flush()
    connection = await session.connection()
    return await repository.cancel_unsent_for_patient(connection, patient_id, now=now)


async def stop_monitoring(
    session: AsyncSession, patient_id: uuid.UUID, *, now: datetime
) -> tuple[int, int]:
    """The patient withdrew their monitoring consent: every check-in still open to them is
    cancelled and every open fallback watch of theirs closed, in the caller's transaction.
    Returns (check-ins cancelled, watches closed).

    The caller holds the patient's row (`lock_row`, taken before any check-in, as re-plans take
    it) and has already set their status, so a timer pass holding a skipped row cancels or
    closes it itself on reading the status."""
    await session.flush()
    connection = await session.connection()
    cancelled = await repository.cancel_open_for_patient(connection, patient_id, now=now)
    closed = await fallbacks.close_for_patient(
        connection, patient_id, outcome=FALLBACK_MONITORING_STOPPED, now=now
    )
    return len(cancelled), closed


async def resume_monitoring(
    session: AsyncSession, patient_id: uuid.UUID, *, now: datetime
) -> ReplanSummary:
    """The patient's monitoring consent was given again: every course is planned again, so the
    check-ins of sessions still ahead (and those whose window is still open) come back; windows
    that closed meanwhile stay cancelled, never missed. The caller holds the patient's row and
    has set their status back first (`replan_course` plans nothing for a withdrawn patient)."""
    total = ReplanSummary()
    for course in await list_courses(session, patient_id):
        done = await replan_course(session, course, now=now)
        total = ReplanSummary(
            inserted=total.inserted + done.inserted,
            updated=total.updated + done.updated,
            cancelled=total.cancelled + done.cancelled,
        )
    return total
