"""HTTP routes of research exports: request, follow, download once; define and join studies."""

import uuid

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.response import File
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.exports import service
from backend.domain.exports.jobs import ARCHIVE_MEDIA_TYPE, ARCHIVE_SUFFIX, result_file
from backend.domain.exports.schemas import ExportRequest, ExportView, NewStudy, StudyView
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

    @post(
        "/studies/{study_id:uuid}/clinics",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.EXPORT),
        status_code=200,
        summary="The admin's clinic joins (consents to) a study",
    )
    async def join_study(
        self,
        study_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> StudyView:
        return await service.join_study(db_session, runtime, principal, study_id)
