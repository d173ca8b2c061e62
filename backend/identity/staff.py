"""Clinics, staff accounts and care teams (clinic admins; operators on the command line)."""

from uuid import UUID, uuid4

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models import CareTeam, CareTeamMembership, Clinic, StaffMember
from backend.identity import passwords, repositories, totp
from backend.identity.audit_trail import audit
from backend.identity.identifiers import STAFF_EMAIL, FieldSealer, blind_index
from backend.identity.patients import check_time_zone
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.identity.schemas import CareTeamView, ClinicView
from backend.lib.errors import Conflict, InvalidInput, NotFound
from backend.lib.preconditions import lock_clinic, require_current
from backend.state import Runtime


async def create_clinic(
    session: AsyncSession,
    runtime: Runtime,
    *,
    name: str,
    totp_required_for_all_staff: bool,
    time_zone: str = "UTC",
) -> Clinic:
    name = " ".join(name.split())
    if not name:
        raise InvalidInput("the clinic needs a name")
    check_time_zone(time_zone, "/time_zone")
    if await repositories.get_clinic_by_name(session, name) is not None:
        raise Conflict("a clinic with this name exists")
    clinic = Clinic(
        id=uuid4(),
        name=name,
        totp_required_for_all_staff=totp_required_for_all_staff,
        time_zone=time_zone,
        created_at=runtime.clock.now(),
    )
    await repositories.add(session, clinic)
    await audit(
        session,
        runtime,
        action="clinic.create",
        resource_type="clinic",
        resource_id=clinic.id,
        clinic_id=clinic.id,
        purpose="operations",
        actor_role="operator",
    )
    return clinic


def clinic_view(clinic: Clinic) -> ClinicView:
    return ClinicView(
        id=clinic.id,
        name=clinic.name,
        totp_required_for_all_staff=clinic.totp_required_for_all_staff,
        time_zone=clinic.time_zone,
    )


async def update_clinic_settings(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    *,
    totp_required_for_all_staff: bool,
    time_zone: str | None = None,
    if_match: frozenset[str] | None = None,
) -> ClinicView:
    """PreconditionFailed if ``if_match`` (entity tags of what a GET of the clinic showed) no
    longer names the clinic as it is. ``time_zone`` None keeps the clinic's zone."""
    assert principal.clinic_id is not None
    if time_zone is not None:
        check_time_zone(time_zone, "/time_zone")
    # Always under the clinic's lock: two unconditional changes must not interleave either.
    await lock_clinic(session, principal.clinic_id)
    # Read after the lock, bypassing the identity map: a copy loaded before may be stale.
    clinic = await session.get(Clinic, principal.clinic_id, populate_existing=True)
    if clinic is None:
        raise NotFound("no such clinic")
    if if_match is not None:
        require_current(if_match, clinic_view(clinic), "the clinic's settings")
    clinic.totp_required_for_all_staff = totp_required_for_all_staff
    if time_zone is not None:
        clinic.time_zone = time_zone
    session.add(clinic)
    await audit(
        session,
        runtime,
        action="clinic.settings",
        resource_type="clinic",
        resource_id=clinic.id,
        clinic_id=clinic.id,
        purpose="operations",
        actor=principal,
    )
    return clinic_view(clinic)


class CreatedAccount:
    """A new staff account and the secrets shown once to whoever created it."""

    def __init__(self, staff: StaffMember, one_time_password: str, totp_uri: str | None) -> None:
        self.staff = staff
        self.one_time_password = one_time_password
        self.totp_provisioning_uri = totp_uri


async def create_staff(
    session: AsyncSession,
    runtime: Runtime,
    *,
    clinic_id: UUID | None,
    role: Role,
    email: str,
    name: str,
    created_by: Principal | None,
    provision_totp: bool = False,
) -> CreatedAccount:
    """A staff account with a one-time password (and, from the CLI, a provisioned TOTP secret).

    The account's data key is created in the same transaction, then email and name are encrypted
    under it before the row is written.
    """
    if role is Role.PATIENT:
        raise InvalidInput("patients are enrolled, not created as staff")
    if (role is Role.OPERATOR) != (clinic_id is None):
        raise InvalidInput("operators belong to no clinic; every other role belongs to one")
    if clinic_id is not None and await repositories.get_clinic(session, clinic_id) is None:
        raise NotFound("no such clinic")
    index = blind_index(runtime, STAFF_EMAIL, email)
    if index is None:
        raise InvalidInput("the email address is not valid")
    if await repositories.get_staff_by_email_index(session, index) is not None:
        raise Conflict("an account with this email address exists")
    staff_id = uuid4()
    await runtime.keyring.create_key(session, staff_id)
    sealer = await FieldSealer.open(runtime, session, staff_id, "staff", staff_id, for_writing=True)
    password = passwords.generate_one_time_password()
    now = runtime.clock.now()
    staff = StaffMember(
        id=staff_id,
        clinic_id=clinic_id,
        role=role.value,
        email_index=index,
        email_ciphertext=sealer.seal("email_ciphertext", email.strip()),
        name_ciphertext=sealer.seal("name_ciphertext", name.strip()),
        password_hash=await passwords.hash_password(password),
        created_at=now,
    )
    uri = None
    if provision_totp:
        secret = totp.new_secret()
        # Handed over by the operator who ran the command, so it counts as confirmed.
        staff.totp_secret_ciphertext = sealer.seal("totp_secret_ciphertext", secret)
        staff.totp_confirmed_at = now
        uri = totp.provisioning_uri(secret, email.strip())
    await repositories.add(session, staff)
    await audit(
        session,
        runtime,
        action="staff.create",
        resource_type="staff",
        resource_id=staff_id,
        clinic_id=clinic_id,
        purpose="operations",
        actor=created_by,
        actor_role=None if created_by is not None else "operator",
    )
    return CreatedAccount(staff, password, uri)


async def create_care_team(
    session: AsyncSession, runtime: Runtime, principal: Principal, name: str
) -> CareTeamView:
    assert principal.clinic_id is not None
    name = " ".join(name.split())
    existing = await repositories.list_care_teams(session, principal.clinic_id)
    if any(team.name == name for team in existing):
        raise Conflict("a care team with this name exists")
    team = CareTeam(
        id=uuid4(), clinic_id=principal.clinic_id, name=name, created_at=runtime.clock.now()
    )
    await repositories.add(session, team)
    await audit(
        session,
        runtime,
        action="care_team.create",
        resource_type="care_team",
        resource_id=team.id,
        clinic_id=team.clinic_id,
        purpose="operations",
        actor=principal,
    )
    return CareTeamView(id=team.id, name=team.name)


async def list_care_teams(session: AsyncSession, principal: Principal) -> list[CareTeamView]:
    assert principal.clinic_id is not None
    teams = await repositories.list_care_teams(session, principal.clinic_id)
    return [
        CareTeamView(
            id=team.id,
            name=team.name,
            member_ids=list(
                await repositories.list_team_members(session, principal.clinic_id, team.id)
            ),
        )
        for team in teams
    ]


async def add_care_team_member(
    session: AsyncSession, runtime: Runtime, principal: Principal, team_id: UUID, staff_id: UUID
) -> CareTeamView:
    assert principal.clinic_id is not None
    team = await repositories.get_care_team(session, principal.clinic_id, team_id)
    if team is None:
        raise NotFound("no such care team")
    member = await repositories.get_staff_in_clinic(session, principal.clinic_id, staff_id)
    if member is None or member.role not in {Role.CLINICIAN, Role.CLINIC_ADMIN}:
        raise NotFound("no such clinician in this clinic")
    if await repositories.get_membership(session, team_id, staff_id) is None:
        await repositories.add(
            session,
            CareTeamMembership(
                care_team_id=team_id,
                staff_id=staff_id,
                clinic_id=principal.clinic_id,
                added_at=runtime.clock.now(),
            ),
        )
        await audit(
            session,
            runtime,
            action="care_team.add_member",
            resource_type="care_team",
            resource_id=team_id,
            clinic_id=principal.clinic_id,
            purpose="operations",
            actor=principal,
        )
    members = await repositories.list_team_members(session, principal.clinic_id, team_id)
    return CareTeamView(id=team.id, name=team.name, member_ids=list(members))
