"""A clinic admin's control over who has access: list staff, disable and re-enable accounts,
change roles, take people off care teams.

A staff member who leaves must lose access at once. Disabling an account revokes every refresh
token it holds (so no session can be renewed), and the access middleware refuses any access token
of an account that is no longer active (``backend.identity.middleware``), so the next request
after the change is refused, not the next one after the token expires. Their care-team
memberships are kept (alert routing skips inactive accounts, and a re-enabled colleague gets
their teams back) but they are taken off the clinic's on-call list, which they do not get back
on re-enabling: who is on call is a decision the admin makes again.

Guards, each a 409 problem with its own type, checked under the clinic's row lock so two admins
acting at once cannot both pass them:

- an admin cannot disable their own account or change their own role (another admin does it);
- the clinic's last active clinic admin stays one (nobody could manage the clinic otherwise);
- the only person left on the on-call list cannot be taken off it by a disable or a change to a
  role that cannot take alerts: name another on-call first, so escalations always reach someone.

A role change revokes the account's refresh tokens too, so the new role holds from the next
login, which also makes a promoted admin enrol TOTP before anything else. Every change is
audited (ids and actions only); a request that changes nothing writes nothing.
"""

from collections.abc import Sequence
from typing import Final
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models import StaffMember
from backend.domain.alerts import store as alert_store
from backend.identity import repositories
from backend.identity.audit_trail import audit
from backend.identity.identifiers import FieldSealer
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.identity.schemas import CareTeamView, StaffMemberView, StaffPage
from backend.lib.errors import Conflict, InvalidInput, NotFound
from backend.lib.preconditions import lock_clinic
from backend.state import Runtime

# Roles that can be on a care team or on call (``alerts.store.active_clinical_staff``).
_ALERTABLE_ROLES: Final = frozenset({Role.CLINICIAN, Role.CLINIC_ADMIN})
_NO_SUCH_STAFF: Final = "no such staff member in this clinic"


class OwnAccount(Conflict):
    problem_type = "own-account"
    title = "A clinic admin cannot change their own access"


class LastClinicAdmin(Conflict):
    problem_type = "last-clinic-admin"
    title = "The clinic's last active clinic admin"


class LastOnCall(Conflict):
    problem_type = "last-on-call"
    title = "The only person on the clinic's on-call list"


def _clinic(principal: Principal) -> UUID:
    assert principal.clinic_id is not None  # a CLINIC-scoped route's caller has one
    return principal.clinic_id


async def _views(
    session: AsyncSession, runtime: Runtime, clinic_id: UUID, rows: Sequence[StaffMember]
) -> list[StaffMemberView]:
    teams = await repositories.teams_of_staff(session, clinic_id, [row.id for row in rows])
    on_call = set(await alert_store.on_call_list(await session.connection(), clinic_id))
    views = []
    for row in rows:
        sealer = await FieldSealer.open(
            runtime, session, row.id, "staff", row.id, for_writing=False
        )
        views.append(
            StaffMemberView(
                id=row.id,
                role=Role(row.role),
                status="active" if row.status == "active" else "disabled",
                name=sealer.unseal("name_ciphertext", row.name_ciphertext),
                email=sealer.unseal("email_ciphertext", row.email_ciphertext),
                totp_enrolled=row.totp_confirmed_at is not None,
                care_team_ids=teams.get(row.id, []),
                on_call=row.id in on_call,
                created_at=row.created_at,
                last_login_at=row.last_login_at,
            )
        )
    return views


async def _audit(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: UUID | None,
) -> None:
    await audit(
        session,
        runtime,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        clinic_id=principal.clinic_id,
        purpose="operations",
        actor=principal,
    )


async def list_staff(
    session: AsyncSession, runtime: Runtime, principal: Principal, *, cursor: str | None, limit: int
) -> StaffPage:
    """One page of the clinic's staff (erased accounts left out), ordered by id."""
    try:
        after = UUID(cursor) if cursor else None
    except ValueError:
        raise InvalidInput("the cursor is not valid") from None
    clinic_id = _clinic(principal)
    rows = await repositories.list_clinic_staff(session, clinic_id, after=after, limit=limit + 1)
    page = rows[:limit]
    await _audit(session, runtime, principal, "staff.list", "staff", None)
    return StaffPage(
        items=await _views(session, runtime, clinic_id, page),
        next_cursor=str(page[-1].id) if len(rows) > limit else None,
    )


async def read_staff(
    session: AsyncSession, runtime: Runtime, principal: Principal, staff_id: UUID
) -> StaffMemberView:
    target = await _staff_in_clinic(session, principal, staff_id)
    await _audit(session, runtime, principal, "staff.read", "staff", target.id)
    (view,) = await _views(session, runtime, _clinic(principal), [target])
    return view


async def _staff_in_clinic(
    session: AsyncSession, principal: Principal, staff_id: UUID
) -> StaffMember:
    """The clinic's account ``staff_id``; another clinic's, an operator's or an erased one is
    "not found", so an admin cannot learn which ids exist elsewhere."""
    target = await repositories.get_staff_in_clinic(session, _clinic(principal), staff_id)
    if target is None or target.status == "erased":
        raise NotFound(_NO_SUCH_STAFF)
    return target


async def _locked_target(
    session: AsyncSession, principal: Principal, staff_id: UUID, *, changing: str
) -> StaffMember:
    """The account, read under the clinic's lock (the guards count the clinic's other accounts
    and on-call list, which a concurrent change must not alter between check and write)."""
    await lock_clinic(session, _clinic(principal))
    target = await _staff_in_clinic(session, principal, staff_id)
    await session.refresh(target)  # a copy read before the lock may be stale
    if target.id == principal.subject_id:
        raise OwnAccount(
            f"you cannot {changing} your own account; another clinic admin of the clinic can"
        )
    return target


async def _keep_an_admin(session: AsyncSession, target: StaffMember) -> None:
    if target.role != Role.CLINIC_ADMIN or target.status != "active":
        return
    assert target.clinic_id is not None
    others = await repositories.count_active_staff_with_role(
        session, target.clinic_id, Role.CLINIC_ADMIN.value, other_than=target.id
    )
    if others == 0:
        raise LastClinicAdmin(
            "this is the clinic's last active clinic admin; make someone else a clinic admin first"
        )


async def _take_off_call(
    session: AsyncSession, runtime: Runtime, principal: Principal, target: StaffMember
) -> None:
    """Off the on-call list, unless that would leave nobody on call (``LastOnCall``)."""
    clinic_id = _clinic(principal)
    connection = await session.connection()
    on_call = await alert_store.on_call_list(connection, clinic_id)
    if target.id not in on_call:
        # Not reached through the list (absent, or inactive): drop any entry it still has.
        if await alert_store.remove_from_on_call(connection, clinic_id, target.id):
            await _audit(
                session, runtime, principal, "alert_on_call.update", "alert_on_call", clinic_id
            )
        return
    if len(on_call) == 1:
        raise LastOnCall(
            "this is the only person on the clinic's on-call list, so unacknowledged alerts"
            " would escalate to nobody on call; name another on-call first"
        )
    await alert_store.remove_from_on_call(connection, clinic_id, target.id)
    await _audit(session, runtime, principal, "alert_on_call.update", "alert_on_call", clinic_id)


async def _end_sessions(runtime: Runtime, session: AsyncSession, target: StaffMember) -> None:
    await repositories.revoke_subject_tokens(session, staff_id=target.id, now=runtime.clock.now())


async def disable_staff(
    session: AsyncSession, runtime: Runtime, principal: Principal, staff_id: UUID
) -> StaffMemberView:
    """The account can no longer sign in, refresh or call any route; idempotent."""
    target = await _locked_target(session, principal, staff_id, changing="disable")
    if target.status == "active":
        await _keep_an_admin(session, target)
        await _take_off_call(session, runtime, principal, target)
        target.status = "disabled"
        session.add(target)
        await session.flush()
        await _end_sessions(runtime, session, target)
        await _audit(session, runtime, principal, "staff.disable", "staff", target.id)
    (view,) = await _views(session, runtime, _clinic(principal), [target])
    return view


async def enable_staff(
    session: AsyncSession, runtime: Runtime, principal: Principal, staff_id: UUID
) -> StaffMemberView:
    """A disabled account may sign in again (same password and TOTP); idempotent. It is not put
    back on the on-call list."""
    target = await _locked_target(session, principal, staff_id, changing="enable")
    if target.status == "disabled":
        target.status = "active"
        session.add(target)
        await session.flush()
        await _audit(session, runtime, principal, "staff.enable", "staff", target.id)
    (view,) = await _views(session, runtime, _clinic(principal), [target])
    return view


async def change_role(
    session: AsyncSession, runtime: Runtime, principal: Principal, staff_id: UUID, role: Role
) -> StaffMemberView:
    """A new role for the account, from its next login (its sessions end now). A role that
    cannot take alerts also takes it off the on-call list and its care teams."""
    if role not in {Role.CLINICIAN, Role.CLINIC_ADMIN, Role.RESEARCHER}:
        raise InvalidInput("a clinic's staff are clinicians, clinic admins or researchers")
    target = await _locked_target(session, principal, staff_id, changing="change the role of")
    if target.role != role:
        if role is not Role.CLINIC_ADMIN:
            await _keep_an_admin(session, target)
        if role not in _ALERTABLE_ROLES:
            await _take_off_call(session, runtime, principal, target)
            await _leave_care_teams(session, runtime, principal, target)
        target.role = role.value
        session.add(target)
        await session.flush()
        await _end_sessions(runtime, session, target)
        await _audit(session, runtime, principal, "staff.role_change", "staff", target.id)
    (view,) = await _views(session, runtime, _clinic(principal), [target])
    return view


async def _leave_care_teams(
    session: AsyncSession, runtime: Runtime, principal: Principal, target: StaffMember
) -> None:
    clinic_id = _clinic(principal)
    teams = await repositories.teams_of_staff(session, clinic_id, [target.id])
    for team_id in teams.get(target.id, []):
        await repositories.remove_membership(session, team_id, target.id)
        await _audit(session, runtime, principal, "care_team.remove_member", "care_team", team_id)


async def remove_care_team_member(
    session: AsyncSession, runtime: Runtime, principal: Principal, team_id: UUID, staff_id: UUID
) -> CareTeamView:
    """Take a staff member off a care team; removing someone who is not on it changes nothing
    (as adding a member twice does). Patients of the team keep their team."""
    clinic_id = _clinic(principal)
    team = await repositories.get_care_team(session, clinic_id, team_id)
    if team is None:
        raise NotFound("no such care team")
    await _staff_in_clinic(session, principal, staff_id)
    if await repositories.remove_membership(session, team_id, staff_id):
        await _audit(session, runtime, principal, "care_team.remove_member", "care_team", team_id)
    members = await repositories.list_team_members(session, clinic_id, team_id)
    return CareTeamView(id=team.id, name=team.name, member_ids=list(members))
