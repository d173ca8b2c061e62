"""Clinic administration views: staff, care teams, on-call list, protocols, alert parameters.

Read-only: changes go through the JSON API (``/api/v1/clinic``, the alert settings routes),
which own validation and audit; these pages show what is in force.
"""

from typing import Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.dashboard import queries
from backend.dashboard.alert_views import alert_settings
from backend.dashboard.pages import page
from backend.dashboard.patients import audit_read
from backend.domain.check_ins.protocols import shipped_protocols
from backend.identity import staff as staff_service
from backend.identity.access import Scope, access
from backend.identity.identifiers import FieldSealer
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.state import Runtime


class DashboardAdminController(Controller):
    path = "/admin"
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/", opt=access(Role.CLINIC_ADMIN, scope=Scope.CLINIC), name="dashboard-admin")
    async def overview(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        assert principal.clinic_id is not None
        connection = await db_session.connection()
        members: list[dict[str, Any]] = []
        for row in await queries.clinic_staff(connection, principal.clinic_id):
            sealer = await FieldSealer.open(
                runtime, db_session, row.id, "staff", row.id, for_writing=False
            )
            members.append(
                {
                    "id": row.id,
                    "name": sealer.unseal("name_ciphertext", row.name_ciphertext) or "—",
                    "role": row.role,
                    "status": row.status,
                    "totp": row.totp_confirmed_at is not None,
                }
            )
        names = {m["id"]: m["name"] for m in members}
        teams = await staff_service.list_care_teams(db_session, principal)
        settings = await alert_settings(db_session, principal.clinic_id)
        await audit_read(
            db_session,
            runtime,
            principal,
            action="staff.list",
            resource_type="staff",
            resource_id=None,
        )
        return page(
            "admin.html",
            principal,
            current="admin",
            members=members,
            names=names,
            teams=teams,
            settings=settings,
            protocols=sorted(shipped_protocols().values(), key=lambda p: p.modality),
        )
