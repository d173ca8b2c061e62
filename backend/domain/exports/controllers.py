"""HTTP routes of research exports: request, follow, download once; define studies, invite
clinics to them, join and withdraw."""

import uuid

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.response import File
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.exports import service
from backend.domain.exports.jobs import ARCHIVE_MEDIA_TYPE, ARCHIVE_SUFFIX, result_file
from backend.domain.exports.schemas import (
    ExportRequest,
    ExportView,
    NewStudy,
    StudyInvitation,
    StudyView,
)
from backend.identity.access import Scope, access
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.state import Runtime

EXPORTERS = (Role.RESEARCHER, Role.CLINIC_ADMIN)


class ExportController(Controller):
    path = "/api/v1/exports"
    tags = ["exports"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @post(
        "/",
        opt=access(*EXPORTERS, scope=Scope.EXPORT),
        status_code=202,
        summary="Request a de-identified research export (runs in the background)",
    )
    async def request_export(
        self,
        data: JSONBody[ExportRequest],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> ExportView:
        return await service.request_export(db_session, runtime, principal, data)

    @get(
        "/{export_id:uuid}",
        opt=access(*EXPORTERS, scope=Scope.EXPORT),
        summary="An export's state, progress and, if refused, why",
        cache=False,
    )
    async def read_export(
        self,
        export_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> ExportView:
        return await service.read_export(db_session, runtime, principal, export_id)

    @get(
        "/{export_id:uuid}/download",
        opt=access(*EXPORTERS, scope=Scope.EXPORT),
        summary="Download the export's archive: once, by the researcher who requested it",
        cache=False,
    )
    async def download_export(
        self,
        export_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> File:
        job = await service.claim_download(db_session, runtime, principal, export_id)
        return File(
            path=result_file(runtime.settings.data_dir, job.result_path),
            filename=f"interlude-export-{job.id}{ARCHIVE_SUFFIX[job.archive]}",
            media_type=ARCHIVE_MEDIA_TYPE[job.archive],
            headers={"Cache-Control": "no-store"},
        )

    @post(
        "/studies",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.EXPORT),
        status_code=201,
        summary="Define a study; the admin's clinic consents to research use in it",
    )
    async def create_study(
        self,
        data: JSONBody[NewStudy],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> StudyView:
        return await service.create_study(db_session, runtime, principal, data)

    @get(
        "/studies/{study_id:uuid}",
        opt=access(*EXPORTERS, scope=Scope.EXPORT),
        summary="A study: its member clinics and, for members, the pending invitations",
        cache=False,
    )
    async def read_study(
        self,
        study_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> StudyView:
        return await service.read_study(db_session, runtime, principal, study_id)

    @post(
        "/studies/{study_id:uuid}/invitations",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.EXPORT),
        status_code=201,
        summary="A member clinic's admin invites another clinic to join the study",
        description="201 with a new invitation; 200 when the clinic was invited already.",
    )
    async def invite_to_study(
        self,
        study_id: FromPath[uuid.UUID],
        data: JSONBody[StudyInvitation],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[StudyView]:
        study, created = await service.invite_to_study(
            db_session, runtime, principal, study_id, data
        )
        return Response(study, status_code=201 if created else 200)

    @delete(
        "/studies/{study_id:uuid}/invitations/{clinic_id:uuid}",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.EXPORT),
        summary="A member's admin revokes a pending invitation, or the invited clinic's declines",
    )
    async def remove_invitation(
        self,
        study_id: FromPath[uuid.UUID],
        clinic_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> None:
        await service.remove_invitation(db_session, runtime, principal, study_id, clinic_id)

    @post(
        "/studies/{study_id:uuid}/clinics",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.EXPORT),
        status_code=200,
        summary="The admin's invited clinic joins (consents to) a study",
    )
    async def join_study(
        self,
        study_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> StudyView:
        return await service.join_study(db_session, runtime, principal, study_id)

    @delete(
        "/studies/{study_id:uuid}/clinics/{clinic_id:uuid}",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.EXPORT),
        summary="The admin's own clinic withdraws from a study; exports not yet out leave it out",
    )
    async def withdraw_from_study(
        self,
        study_id: FromPath[uuid.UUID],
        clinic_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> None:
        await service.withdraw_from_study(db_session, runtime, principal, study_id, clinic_id)
