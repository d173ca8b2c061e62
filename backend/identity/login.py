"""Staff sign-in: password, second factor, lockout; TOTP enrolment; password change.

Failures are counted per account (the email's blind index, whether or not such an account exists,
so a lock reveals nothing) and per source address, in the database (``lockout``). Every refusal
writes an audit row and its counters and then raises ``RecordedDenial`` so the controller commits
them; nothing else changes.
"""

import hashlib
import hmac
from typing import NoReturn
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models import StaffMember
from backend.identity import passwords, repositories, totp
from backend.identity.audit_trail import audit
from backend.identity.errors import RecordedDenial, TooManyAttempts, TotpRequired
from backend.identity.identifiers import STAFF_EMAIL, FieldSealer, blind_index
from backend.identity.lockout import ACCOUNT_POLICY, SOURCE_POLICY, LockoutPolicy, locked_until
from backend.identity.principal import Principal
from backend.identity.roles import Role, totp_required
from backend.identity.schemas import StaffLogin, StaffLoginResult, TokenPair, TotpEnrolment
from backend.identity.sessions import enrolment_access_token, start_session
from backend.lib.errors import InvalidInput, NotFound, Unauthorized
from backend.state import Runtime

_WRONG_CREDENTIALS = "the email, password or one-time code is not correct"
_LOCKED = "too many failed attempts; wait a while before trying again"


def account_key(email_index: bytes) -> str:
    return "account:" + email_index.hex()


def source_key(runtime: Runtime, kind: str, source: str) -> str:
    """A keyed hash of the client address: counters must not become a log of who connected."""
    digest = hmac.new(runtime.secrets.token_signing_key, source.encode(), hashlib.sha256)
    return f"{kind}:" + digest.hexdigest()[:48]  # 192 bits; the key column holds 80


async def check_not_locked(
    session: AsyncSession,
    runtime: Runtime,
    keys: list[tuple[str, LockoutPolicy]],
    *,
    action: str,
    actor_id: UUID | None = None,
) -> None:
    now = runtime.clock.now()
    for key, policy in keys:
        counter = await repositories.login_failures(session, key)
        if counter is None:
            continue
        if locked_until(policy, counter.failures, counter.last_failure_at, now) is not None:
            await audit(
                session,
                runtime,
                action=f"{action}.locked",
                resource_type="account" if key.startswith("account:") else "source",
                resource_id=None,
                clinic_id=None,
                purpose="security",
                outcome="denied",
                actor_id=actor_id,
            )
            raise RecordedDenial(TooManyAttempts(_LOCKED))


async def record_failure(
    session: AsyncSession, runtime: Runtime, keys: list[tuple[str, LockoutPolicy]]
) -> None:
    now = runtime.clock.now()
    for key, policy in keys:
        await repositories.record_login_failure(session, key, now, policy)


async def log_in(
    session: AsyncSession, runtime: Runtime, data: StaffLogin, *, source: str
) -> StaffLoginResult:
    index = blind_index(runtime, STAFF_EMAIL, data.email)
    if index is None:
        raise InvalidInput("the email address is not valid")
    keys = [
        (account_key(index), ACCOUNT_POLICY),
        (source_key(runtime, "login-source", source), SOURCE_POLICY),
    ]
    await check_not_locked(session, runtime, keys, action="login")
    staff = await repositories.get_staff_by_email_index(session, index)
    usable = staff is not None and staff.status == "active"
    stored_hash = staff.password_hash if staff is not None and usable else None
    if not await passwords.verify_password(stored_hash, data.password):
        await _refuse(session, runtime, keys, staff, reason="password")
    assert staff is not None
    role = Role(staff.role)
    clinic = await repositories.get_clinic(session, staff.clinic_id) if staff.clinic_id else None
    needs_totp = totp_required(
        role, clinic_requires_totp_for_all_staff=bool(clinic and clinic.totp_required_for_all_staff)
    )
    if staff.totp_confirmed_at is not None and staff.totp_secret_ciphertext is not None:
        if data.totp_code is None:
            # The password was right; the client asks for the code and sends both again.
            raise TotpRequired("enter the code from your authenticator app")
        sealer = await FieldSealer.open(
            runtime, session, staff.id, "staff", staff.id, for_writing=False
        )
        secret = sealer.unseal("totp_secret_ciphertext", staff.totp_secret_ciphertext)
        assert secret is not None
        step = totp.accepted_step(
            secret, data.totp_code, at=runtime.clock.now(), last_step=staff.totp_last_step
        )
        if step is None:
            await _refuse(session, runtime, keys, staff, reason="totp")
        staff.totp_last_step = step
        session.add(staff)
    elif needs_totp:
        await repositories.clear_login_failures(session, keys[0][0])
        await _audit_login(session, runtime, staff, "login.totp_enrolment_required", "success")
        return StaffLoginResult(
            status="totp_enrolment_required",
            enrolment_access_token=enrolment_access_token(
                runtime, role=role, staff_id=staff.id, clinic_id=staff.clinic_id
            ),
        )
    await repositories.clear_login_failures(session, keys[0][0])
    await _audit_login(session, runtime, staff, "login", "success")
    staff.last_login_at = runtime.clock.now()
    session.add(staff)
    tokens = await start_session(
        session, runtime, role=role, subject_id=staff.id, clinic_id=staff.clinic_id
    )
    return StaffLoginResult(status="authenticated", tokens=tokens)


async def _refuse(
    session: AsyncSession,
    runtime: Runtime,
    keys: list[tuple[str, LockoutPolicy]],
    staff: StaffMember | None,
    *,
    reason: str,
) -> NoReturn:
    await record_failure(session, runtime, keys)
    await _audit_login(session, runtime, staff, f"login.{reason}", "denied")
    raise RecordedDenial(Unauthorized(_WRONG_CREDENTIALS))


async def _audit_login(
    session: AsyncSession,
    runtime: Runtime,
    staff: StaffMember | None,
    action: str,
    outcome: str,
) -> None:
    await audit(
        session,
        runtime,
        action=action,
        resource_type="staff",
        resource_id=staff.id if staff is not None else None,
        clinic_id=staff.clinic_id if staff is not None else None,
        purpose="security",
        outcome="denied" if outcome == "denied" else "success",
        actor_id=staff.id if staff is not None else None,
        actor_role=staff.role if staff is not None else None,
    )


async def _own_account(session: AsyncSession, principal: Principal) -> StaffMember:
    staff = await repositories.get_staff(session, principal.subject_id)
    if staff is None or staff.status != "active":
        raise NotFound("no such account")
    return staff


async def begin_totp_enrolment(
    session: AsyncSession, runtime: Runtime, principal: Principal
) -> TotpEnrolment:
    """A new secret, kept encrypted as pending until a code from it is confirmed."""
    staff = await _own_account(session, principal)
    secret = totp.new_secret()
    sealer = await FieldSealer.open(runtime, session, staff.id, "staff", staff.id, for_writing=True)
    staff.totp_pending_ciphertext = sealer.seal("totp_pending_ciphertext", secret)
    session.add(staff)
    email = sealer.unseal("email_ciphertext", staff.email_ciphertext) or str(staff.id)
    await audit(
        session,
        runtime,
        action="totp.enrolment_started",
        resource_type="staff",
        resource_id=staff.id,
        clinic_id=staff.clinic_id,
        purpose="security",
        actor=principal,
    )
    return TotpEnrolment(secret=secret, provisioning_uri=totp.provisioning_uri(secret, email))


async def confirm_totp_enrolment(
    session: AsyncSession, runtime: Runtime, principal: Principal, code: str
) -> TokenPair:
    """Activates the pending secret if ``code`` comes from it; returns a full session."""
    staff = await _own_account(session, principal)
    keys = [(f"totp-enrolment:{staff.id}", ACCOUNT_POLICY)]
    await check_not_locked(session, runtime, keys, action="totp.confirm", actor_id=staff.id)
    if staff.totp_pending_ciphertext is None:
        raise InvalidInput("start TOTP enrolment first")
    sealer = await FieldSealer.open(runtime, session, staff.id, "staff", staff.id, for_writing=True)
    secret = sealer.unseal("totp_pending_ciphertext", staff.totp_pending_ciphertext)
    assert secret is not None
    step = totp.accepted_step(secret, code, at=runtime.clock.now(), last_step=None)
    if step is None:
        await record_failure(session, runtime, keys)
        await audit(
            session,
            runtime,
            action="totp.confirm",
            resource_type="staff",
            resource_id=staff.id,
            clinic_id=staff.clinic_id,
            purpose="security",
            outcome="denied",
            actor=principal,
        )
        raise RecordedDenial(Unauthorized(_WRONG_CREDENTIALS))
    staff.totp_secret_ciphertext = sealer.seal("totp_secret_ciphertext", secret)
    staff.totp_pending_ciphertext = None
    staff.totp_last_step = step
    staff.totp_confirmed_at = runtime.clock.now()
    # The first full sign-in of an account that had to set up its authenticator app first.
    staff.last_login_at = staff.totp_confirmed_at
    session.add(staff)
    await repositories.clear_login_failures(session, keys[0][0])
    await audit(
        session,
        runtime,
        action="totp.confirmed",
        resource_type="staff",
        resource_id=staff.id,
        clinic_id=staff.clinic_id,
        purpose="security",
        actor=principal,
    )
    return await start_session(
        session, runtime, role=Role(staff.role), subject_id=staff.id, clinic_id=staff.clinic_id
    )


async def change_password(
    session: AsyncSession, runtime: Runtime, principal: Principal, current: str, new: str
) -> None:
    staff = await _own_account(session, principal)
    keys = [(f"password-change:{staff.id}", ACCOUNT_POLICY)]
    await check_not_locked(session, runtime, keys, action="password.change", actor_id=staff.id)
    if not await passwords.verify_password(staff.password_hash, current):
        await record_failure(session, runtime, keys)
        await audit(
            session,
            runtime,
            action="password.change",
            resource_type="staff",
            resource_id=staff.id,
            clinic_id=staff.clinic_id,
            purpose="security",
            outcome="denied",
            actor=principal,
        )
        raise RecordedDenial(Unauthorized(_WRONG_CREDENTIALS))
    if not passwords.MIN_PASSWORD_LENGTH <= len(new) <= passwords.MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the new password needs at least {passwords.MIN_PASSWORD_LENGTH} characters"
        )
    staff.password_hash = await passwords.hash_password(new)
    session.add(staff)
    # A password is changed most urgently when someone else may know it: whoever signed in with
    # the old one is signed out (their access tokens refused from the next request), everywhere
    # but in the session that made the change.
    await repositories.revoke_subject_tokens(
        session, staff_id=staff.id, now=runtime.clock.now(), keep_family=principal.session_id
    )
    await audit(
        session,
        runtime,
        action="password.changed",
        resource_type="staff",
        resource_id=staff.id,
        clinic_id=staff.clinic_id,
        purpose="security",
        actor=principal,
    )
