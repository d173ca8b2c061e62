"""HTTP routes of a clinic admin's control over staff access (``backend.identity.staff_admin``).

They sit beside ``ClinicAdminController``'s staff and care-team routes, under the same path
(``GET /staff`` is there: Litestar refuses two controllers serving one path). The changes are
one-shot actions (disable, enable, a new role, a removal), each idempotent, so like the
neighbouring add-staff and add-member routes they take no ``If-Match``.
"""

from uuid import UUID

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.identity import staff_admin
from backend.identity.access import Scope, access
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.identity.schemas import CareTeamView, StaffMemberView, StaffRoleChange
from backend.state import Runtime

ADMIN = access(Role.CLINIC_ADMIN, scope=Scope.CLINIC)


class StaffAdminController(Controller):
    path = "/api/v1/clinic"
    tags = ["clinic administration"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/staff/{staff_id:uuid}", opt=ADMIN, summary="One staff account of the clinic")
    async def get_staff(
        self,
        staff_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> StaffMemberView:
        return await staff_admin.read_staff(db_session, runtime, principal, staff_id)

    @post(
        "/staff/{staff_id:uuid}/disable",
        opt=ADMIN,
        status_code=200,
        summary="Disable an account: its sessions end and its tokens stop working at once",
    )
    async def disable_staff(
        self,
        staff_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> StaffMemberView:
        return await staff_admin.disable_staff(db_session, runtime, principal, staff_id)

    @post(
        "/staff/{staff_id:uuid}/enable",
        opt=ADMIN,
        status_code=200,
        summary="Re-enable a disabled account (not back on call)",
    )
    async def enable_staff(
        self,
        staff_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> StaffMemberView:
        return await staff_admin.enable_staff(db_session, runtime, principal, staff_id)

    @put(
        "/staff/{staff_id:uuid}/role",
        opt=ADMIN,
        summary="Change an account's role; its sessions end, the role holds from its next login",
    )
    async def change_role(
        self,
        staff_id: FromPath[UUID],
        data: JSONBody[StaffRoleChange],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> StaffMemberView:
        return await staff_admin.change_role(
            db_session, runtime, principal, staff_id, Role(data.role)
        )

    @delete(
        "/care-teams/{care_team_id:uuid}/members/{staff_id:uuid}",
        opt=ADMIN,
        status_code=200,
        summary="Take a staff member off a care team",
    )
    async def remove_care_team_member(
        self,
        care_team_id: FromPath[UUID],
        staff_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> CareTeamView:
        return await staff_admin.remove_care_team_member(
            db_session, runtime, principal, care_team_id, staff_id
        )
