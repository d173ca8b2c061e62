"""Sessions: issuing token pairs, rotating refresh tokens with reuse detection, logging out.

A session is a refresh-token family: one staff login or one enrolled device. Every refresh marks
the presented token used and issues its child; a used or revoked token presented again revokes the
whole family (RFC 9700 §4.14.2), because either the client or a thief now holds a stale copy.
"""

from datetime import datetime
from typing import NoReturn
from uuid import UUID, uuid4

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models import RefreshToken
from backend.identity import repositories
from backend.identity.audit_trail import audit
from backend.identity.errors import RecordedDenial
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.identity.schemas import TokenPair
from backend.identity.tokens import (
    PATIENT_REFRESH_LIFETIME,
    STAFF_REFRESH_LIFETIME,
    Audience,
    Stage,
    audience_for,
    hash_refresh_token,
    issue_access_token,
    new_refresh_token,
)
from backend.lib.errors import Unauthorized
from backend.state import Runtime

_REFRESH_REFUSED = "the refresh token is not valid; log in again"


async def start_session(
    session: AsyncSession,
    runtime: Runtime,
    *,
    role: Role,
    subject_id: UUID,
    clinic_id: UUID | None,
    device_id: UUID | None = None,
) -> TokenPair:
    """A new family: an access token and the family's first refresh token."""
    now = runtime.clock.now()
    family_id = uuid4()
    lifetime = PATIENT_REFRESH_LIFETIME if role is Role.PATIENT else STAFF_REFRESH_LIFETIME
    return await _issue(
        session,
        runtime,
        role=role,
        subject_id=subject_id,
        clinic_id=clinic_id,
        device_id=device_id,
        family_id=family_id,
        parent_id=None,
        now=now,
        refresh_expires_at=now + lifetime,
    )


def enrolment_access_token(
    runtime: Runtime, *, role: Role, staff_id: UUID, clinic_id: UUID | None
) -> str:
    """An access token that reaches only the TOTP enrolment routes, with no refresh token."""
    token, _ = issue_access_token(
        runtime.secrets.token_signing_key,
        subject_id=staff_id,
        role=role,
        clinic_id=clinic_id,
        session_id=uuid4(),
        now=runtime.clock.now(),
        stage=Stage.TOTP_ENROLMENT,
    )
    return token


async def _issue(
    session: AsyncSession,
    runtime: Runtime,
    *,
    role: Role,
    subject_id: UUID,
    clinic_id: UUID | None,
    device_id: UUID | None,
    family_id: UUID,
    parent_id: UUID | None,
    now: datetime,
    refresh_expires_at: datetime,
) -> TokenPair:
    access_token, access_expires_at = issue_access_token(
        runtime.secrets.token_signing_key,
        subject_id=subject_id,
        role=role,
        clinic_id=clinic_id,
        session_id=family_id,
        now=now,
        device_id=device_id,
    )
    refresh_token = new_refresh_token()
    audience = audience_for(role)
    await repositories.add(
        session,
        RefreshToken(
            id=uuid4(),
            token_hash=hash_refresh_token(refresh_token),
            family_id=family_id,
            parent_id=parent_id,
            audience=audience.value,
            staff_id=subject_id if audience is Audience.STAFF else None,
            patient_id=subject_id if audience is Audience.PATIENT else None,
            device_id=device_id,
            clinic_id=clinic_id,
            issued_at=now,
            expires_at=refresh_expires_at,
        ),
    )
    return TokenPair(
        access_token=access_token,
        access_token_expires_at=access_expires_at,
        refresh_token=refresh_token,
        refresh_token_expires_at=refresh_expires_at,
    )


async def rotate(session: AsyncSession, runtime: Runtime, presented: str) -> TokenPair:
    """Exchange a refresh token for a new pair. Raises ``RecordedDenial`` (401) when refused."""
    now = runtime.clock.now()
    row = await repositories.get_refresh_token(session, hash_refresh_token(presented))
    if row is None:
        await _deny(session, runtime, None, "unknown")
    if row.used_at is not None or row.revoked_at is not None:
        # Reuse: revoke every token of the family, the thief's and the client's alike.
        await repositories.revoke_family(session, row.family_id, now)
        await _deny(session, runtime, row, "reused")
    if row.expires_at <= now:
        await _deny(session, runtime, row, "expired")
    if not await repositories.use_refresh_token(session, row.id, now):
        # Another request used it between our read and our update: the same reuse.
        await repositories.revoke_family(session, row.family_id, now)
        await _deny(session, runtime, row, "reused")

    role, clinic_id = await _current_role(session, row)
    if role is None:
        await repositories.revoke_family(session, row.family_id, now)
        await _deny(session, runtime, row, "account_inactive")
    subject_id = row.staff_id if row.staff_id is not None else row.patient_id
    assert subject_id is not None
    # Staff sessions end a fixed time after login; a patient's device stays enrolled while used.
    expires_at = row.expires_at if role is not Role.PATIENT else now + PATIENT_REFRESH_LIFETIME
    return await _issue(
        session,
        runtime,
        role=role,
        subject_id=subject_id,
        clinic_id=clinic_id,
        device_id=row.device_id,
        family_id=row.family_id,
        parent_id=row.id,
        now=now,
        refresh_expires_at=expires_at,
    )


async def _current_role(
    session: AsyncSession, row: RefreshToken
) -> tuple[Role | None, UUID | None]:
    """The subject's role and clinic as they are now (a role change applies at the next refresh),
    or None when the account, patient or device may no longer sign in."""
    if row.staff_id is not None:
        staff = await repositories.get_staff(session, row.staff_id)
        if staff is None or staff.status != "active":
            return None, None
        return Role(staff.role), staff.clinic_id
    assert row.patient_id is not None
    assert row.clinic_id is not None
    patient = await repositories.get_patient(session, row.clinic_id, row.patient_id)
    if patient is None or patient.status in {"erased", "withdrawn"}:
        return None, None
    if row.device_id is not None:
        device = await repositories.get_device(session, patient.id, row.device_id)
        if device is None or device.revoked_at is not None:
            return None, None
    return Role.PATIENT, patient.clinic_id


async def _deny(
    session: AsyncSession, runtime: Runtime, row: RefreshToken | None, reason: str
) -> NoReturn:
    subject = None if row is None else (row.staff_id or row.patient_id)
    role = None
    if row is not None:
        role = Role.PATIENT.value if row.patient_id is not None else "staff"
    await audit(
        session,
        runtime,
        action=f"session.refresh.{reason}",
        resource_type="session",
        resource_id=row.family_id if row is not None else None,
        clinic_id=row.clinic_id if row is not None else None,
        purpose="security",
        outcome="denied",
        actor_id=subject,
        actor_role=role,
    )
    raise RecordedDenial(Unauthorized(_REFRESH_REFUSED))


async def end_session(session: AsyncSession, runtime: Runtime, principal: Principal) -> None:
    """Logout: revoke this session's refresh-token family."""
    await repositories.revoke_family(session, principal.session_id, runtime.clock.now())
    await audit(
        session,
        runtime,
        action="session.logout",
        resource_type="session",
        resource_id=principal.session_id,
        clinic_id=principal.clinic_id,
        purpose="security",
        actor=principal,
    )


async def end_all_sessions(session: AsyncSession, runtime: Runtime, principal: Principal) -> int:
    """ "Log out everywhere": every refresh token of the caller; a patient's devices stop
    receiving pushes too. Returns how many refresh tokens were revoked."""
    now = runtime.clock.now()
    if principal.is_patient:
        revoked = await repositories.revoke_subject_tokens(
            session, patient_id=principal.subject_id, now=now
        )
        await repositories.revoke_devices(session, principal.subject_id, now)
    else:
        revoked = await repositories.revoke_subject_tokens(
            session, staff_id=principal.subject_id, now=now
        )
    await audit(
        session,
        runtime,
        action="session.revoke_all",
        resource_type="patient" if principal.is_patient else "staff",
        resource_id=principal.subject_id,
        clinic_id=principal.clinic_id,
        purpose="security",
        actor=principal,
    )
    return revoked
