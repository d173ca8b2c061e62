"""Every SQL statement of the identity area. Functions take the caller's session; none commits.

Queries on patient data take the caller's ``clinic_id`` as a required argument, so a query that
forgets to scope does not type-check.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Exists,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    true,
    update,
)
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models import (
    CareTeam,
    CareTeamMembership,
    Clinic,
    Device,
    EnrolmentCode,
    LoginFailureCounter,
    Patient,
    RefreshToken,
    StaffMember,
)
from backend.db.types import UTCDateTime
from backend.db.upsert import dialect_insert
from backend.identity.lockout import LockoutPolicy

_COUNTERS = cast(Table, LoginFailureCounter.__table__)  # type: ignore[attr-defined]
_REFRESH = cast(Table, RefreshToken.__table__)  # type: ignore[attr-defined]
_CODES = cast(Table, EnrolmentCode.__table__)  # type: ignore[attr-defined]
_DEVICES = cast(Table, Device.__table__)  # type: ignore[attr-defined]
_MEMBERSHIPS = cast(Table, CareTeamMembership.__table__)  # type: ignore[attr-defined]
_STAFF = cast(Table, StaffMember.__table__)  # type: ignore[attr-defined]


async def add(session: AsyncSession, *rows: Any) -> None:
    session.add_all(rows)
    await session.flush()


# --- clinics and care teams ---


async def get_clinic(session: AsyncSession, clinic_id: UUID) -> Clinic | None:
    return await session.get(Clinic, clinic_id)


async def get_clinic_by_name(session: AsyncSession, name: str) -> Clinic | None:
    return (await session.exec(select(Clinic).where(col(Clinic.name) == name))).first()


async def list_clinics(session: AsyncSession) -> Sequence[Clinic]:
    return (await session.exec(select(Clinic).order_by(col(Clinic.name)))).all()


async def get_care_team(session: AsyncSession, clinic_id: UUID, team_id: UUID) -> CareTeam | None:
    statement = select(CareTeam).where(
        col(CareTeam.id) == team_id, col(CareTeam.clinic_id) == clinic_id
    )
    return (await session.exec(statement)).first()


async def list_care_teams(session: AsyncSession, clinic_id: UUID) -> Sequence[CareTeam]:
    statement = (
        select(CareTeam).where(col(CareTeam.clinic_id) == clinic_id).order_by(col(CareTeam.name))
    )
    return (await session.exec(statement)).all()


async def get_membership(
    session: AsyncSession, team_id: UUID, staff_id: UUID
) -> CareTeamMembership | None:
    return await session.get(CareTeamMembership, (team_id, staff_id))


async def list_team_members(
    session: AsyncSession, clinic_id: UUID, team_id: UUID
) -> Sequence[UUID]:
    statement = select(CareTeamMembership.staff_id).where(
        col(CareTeamMembership.care_team_id) == team_id,
        col(CareTeamMembership.clinic_id) == clinic_id,
    )
    return (await session.exec(statement)).all()


async def remove_membership(session: AsyncSession, team_id: UUID, staff_id: UUID) -> bool:
    connection = await session.connection()
    result = await connection.execute(
        delete(_MEMBERSHIPS).where(
            _MEMBERSHIPS.c.care_team_id == team_id, _MEMBERSHIPS.c.staff_id == staff_id
        )
    )
    return bool(result.rowcount)


async def teams_of_staff(
    session: AsyncSession, clinic_id: UUID, staff_ids: Sequence[UUID]
) -> dict[UUID, list[UUID]]:
    """The care teams each of ``staff_ids`` belongs to, by staff id (absent: none)."""
    if not staff_ids:
        return {}
    statement = (
        select(CareTeamMembership.staff_id, CareTeamMembership.care_team_id)
        .where(
            col(CareTeamMembership.clinic_id) == clinic_id,
            col(CareTeamMembership.staff_id).in_(staff_ids),
        )
        .order_by(col(CareTeamMembership.care_team_id))
    )
    found: dict[UUID, list[UUID]] = {}
    for staff_id, team_id in (await session.exec(statement)).all():
        found.setdefault(staff_id, []).append(team_id)
    return found


# --- staff ---


async def get_staff(session: AsyncSession, staff_id: UUID) -> StaffMember | None:
    return await session.get(StaffMember, staff_id)


async def get_staff_in_clinic(
    session: AsyncSession, clinic_id: UUID, staff_id: UUID
) -> StaffMember | None:
    statement = select(StaffMember).where(
        col(StaffMember.id) == staff_id, col(StaffMember.clinic_id) == clinic_id
    )
    return (await session.exec(statement)).first()


def family_live(family_id: UUID | BindParameter[UUID]) -> Exists:
    """The refresh-token family still has a token neither revoked nor replaced by reuse
    detection: logging out, "log out everywhere", erasure and a replayed refresh token revoke
    every token of the family at once. ``family_id``: a value, or a bind of a compiled
    statement (`responses.repository.submission_context`)."""
    return exists().where(_REFRESH.c.family_id == family_id, _REFRESH.c.revoked_at.is_(None))


async def staff_access(
    session: AsyncSession, staff_id: UUID, family_id: UUID | None
) -> tuple[str, str, UUID | None, bool] | None:
    """Status, role and clinic of an account, as the access check compares them with a token,
    and whether the token's session (``family_id``) is still live; a token with no family
    (None: the TOTP-enrolment token, which has no refresh token) counts as live."""
    live: ColumnElement[bool] = true() if family_id is None else family_live(family_id)
    statement = sa_select(_STAFF.c.status, _STAFF.c.role, _STAFF.c.clinic_id, live).where(
        _STAFF.c.id == staff_id
    )
    row = (await (await session.connection()).execute(statement)).first()
    return None if row is None else (row[0], row[1], row[2], bool(row[3]))


async def session_live(session: AsyncSession, family_id: UUID) -> bool:
    """Whether access tokens issued under ``family_id`` still speak for a live session."""
    connection = await session.connection()
    return bool(await connection.scalar(sa_select(family_live(family_id))))


async def list_clinic_staff(
    session: AsyncSession, clinic_id: UUID, *, after: UUID | None, limit: int
) -> Sequence[StaffMember]:
    """One page of the clinic's staff accounts (erased ones left out), ordered by id."""
    statement = select(StaffMember).where(
        col(StaffMember.clinic_id) == clinic_id, col(StaffMember.status) != "erased"
    )
    if after is not None:
        statement = statement.where(col(StaffMember.id) > after)
    return (await session.exec(statement.order_by(col(StaffMember.id)).limit(limit))).all()


async def count_active_staff_with_role(
    session: AsyncSession, clinic_id: UUID, role: str, *, other_than: UUID
) -> int:
    statement = select(func.count()).where(
        col(StaffMember.clinic_id) == clinic_id,
        col(StaffMember.role) == role,
        col(StaffMember.status) == "active",
        col(StaffMember.id) != other_than,
    )
    return int((await session.exec(statement)).one())


async def get_staff_by_email_index(session: AsyncSession, index: bytes) -> StaffMember | None:
    statement = select(StaffMember).where(col(StaffMember.email_index) == index)
    return (await session.exec(statement)).first()


# --- patients ---


async def get_patient(session: AsyncSession, clinic_id: UUID, patient_id: UUID) -> Patient | None:
    statement = select(Patient).where(
        col(Patient.id) == patient_id, col(Patient.clinic_id) == clinic_id
    )
    return (await session.exec(statement)).first()


async def get_patient_clinic(session: AsyncSession, patient_id: UUID) -> UUID | None:
    """The clinic of a patient, for the access check before a PATIENT-scoped route runs."""
    statement = select(Patient.clinic_id).where(col(Patient.id) == patient_id)
    return (await session.exec(statement)).first()


async def find_patient_by_index(
    session: AsyncSession, clinic_id: UUID, column: str, index: bytes
) -> Patient | None:
    statement = select(Patient).where(
        col(Patient.clinic_id) == clinic_id, getattr(Patient, column) == index
    )
    return (await session.exec(statement)).first()


async def list_patients(
    session: AsyncSession, clinic_id: UUID, *, after: UUID | None, limit: int
) -> Sequence[Patient]:
    """One page of the clinic's patients, ordered by id (a stable cursor)."""
    statement = select(Patient).where(
        col(Patient.clinic_id) == clinic_id, col(Patient.status) != "erased"
    )
    if after is not None:
        statement = statement.where(col(Patient.id) > after)
    return (await session.exec(statement.order_by(col(Patient.id)).limit(limit))).all()


# --- enrolment codes ---


async def revoke_open_codes(session: AsyncSession, patient_id: UUID, now: datetime) -> None:
    connection = await session.connection()
    await connection.execute(
        update(_CODES)
        .where(
            _CODES.c.patient_id == patient_id,
            _CODES.c.redeemed_at.is_(None),
            _CODES.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )


async def get_code_by_index(session: AsyncSession, index: bytes) -> EnrolmentCode | None:
    statement = select(EnrolmentCode).where(col(EnrolmentCode.code_index) == index)
    return (await session.exec(statement)).first()


async def claim_code(session: AsyncSession, code_id: UUID, now: datetime) -> bool:
    """Mark the code redeemed if it is still open and unexpired: one statement, so two phones
    racing with the same code cannot both succeed."""
    connection = await session.connection()
    result = await connection.execute(
        update(_CODES)
        .where(
            _CODES.c.id == code_id,
            _CODES.c.redeemed_at.is_(None),
            _CODES.c.revoked_at.is_(None),
            _CODES.c.expires_at > now,
        )
        .values(redeemed_at=now)
    )
    return bool(result.rowcount)


async def set_code_device(session: AsyncSession, code_id: UUID, device_id: UUID) -> None:
    connection = await session.connection()
    await connection.execute(
        update(_CODES).where(_CODES.c.id == code_id).values(device_id=device_id)
    )


# --- devices ---


async def get_device(session: AsyncSession, patient_id: UUID, device_id: UUID) -> Device | None:
    statement = select(Device).where(
        col(Device.id) == device_id, col(Device.patient_id) == patient_id
    )
    return (await session.exec(statement)).first()


async def has_enrolled_device(session: AsyncSession, patient_id: UUID) -> bool:
    """Whether the patient has a device that still signs in (they redeemed a code on it)."""
    statement = (
        select(col(Device.id))
        .where(col(Device.patient_id) == patient_id, col(Device.revoked_at).is_(None))
        .limit(1)
    )
    return (await session.exec(statement)).first() is not None


async def revoke_devices(session: AsyncSession, patient_id: UUID, now: datetime) -> int:
    """Every enrolled device of the patient stops receiving pushes; how many there were."""
    connection = await session.connection()
    result = await connection.execute(
        update(_DEVICES)
        .where(_DEVICES.c.patient_id == patient_id, _DEVICES.c.revoked_at.is_(None))
        .values(revoked_at=now, push_token_ciphertext=None)
    )
    return int(result.rowcount)


# --- refresh tokens ---


async def get_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    statement = select(RefreshToken).where(col(RefreshToken.token_hash) == token_hash)
    return (await session.exec(statement)).first()


async def use_refresh_token(session: AsyncSession, token_id: UUID, now: datetime) -> bool:
    """Mark a live token used; False if it was already used or revoked (a replay)."""
    connection = await session.connection()
    result = await connection.execute(
        update(_REFRESH)
        .where(
            _REFRESH.c.id == token_id,
            _REFRESH.c.used_at.is_(None),
            _REFRESH.c.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    return bool(result.rowcount)


async def revoke_family(session: AsyncSession, family_id: UUID, now: datetime) -> int:
    connection = await session.connection()
    result = await connection.execute(
        update(_REFRESH)
        .where(_REFRESH.c.family_id == family_id, _REFRESH.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)


async def revoke_subject_tokens(
    session: AsyncSession,
    *,
    staff_id: UUID | None = None,
    patient_id: UUID | None = None,
    now: datetime,
    keep_family: UUID | None = None,
) -> int:
    """Every live refresh token of one staff member or one patient (all sessions, all devices),
    but those of the session ``keep_family`` when one is named."""
    if (staff_id is None) == (patient_id is None):
        msg = "name exactly one of staff_id and patient_id"
        raise ValueError(msg)
    condition = (
        _REFRESH.c.staff_id == staff_id
        if staff_id is not None
        else _REFRESH.c.patient_id == patient_id
    )
    if keep_family is not None:
        condition = and_(condition, _REFRESH.c.family_id != keep_family)
    connection = await session.connection()
    result = await connection.execute(
        update(_REFRESH).where(condition, _REFRESH.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return int(result.rowcount)


# --- login failure counters ---


async def login_failures(session: AsyncSession, key: str) -> LoginFailureCounter | None:
    return await session.get(LoginFailureCounter, key)


async def record_login_failure(
    session: AsyncSession, key: str, now: datetime, policy: LockoutPolicy
) -> int:
    """Count one failure with a single atomic UPSERT; returns the count including this one.

    Two instances failing the same account at once both increment: the row is the only state.
    A counter quiet for longer than ``policy.forget_after`` restarts at one.
    """
    connection = await session.connection()
    insert = dialect_insert(connection)
    stale = _COUNTERS.c.last_failure_at < now - policy.forget_after
    statement = (
        insert(_COUNTERS)
        .values(key=key, failures=1, first_failure_at=now, last_failure_at=now)
        .on_conflict_do_update(
            index_elements=[_COUNTERS.c.key],
            set_={
                "failures": case((stale, 1), else_=_COUNTERS.c.failures + 1),
                "first_failure_at": case(
                    (stale, literal(now, UTCDateTime())), else_=_COUNTERS.c.first_failure_at
                ),
                "last_failure_at": now,
            },
        )
        .returning(_COUNTERS.c.failures)
    )
    return int((await connection.execute(statement)).scalar_one())


async def clear_login_failures(session: AsyncSession, key: str) -> None:
    connection = await session.connection()
    await connection.execute(delete(_COUNTERS).where(_COUNTERS.c.key == key))
