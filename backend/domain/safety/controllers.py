"""HTTP for a clinic's crisis resources (clinical-spec §5.3 rule 2): the clinic admin sets them
per locale; clinicians and admins read them. The patient's acknowledgement of the crisis screen
is recorded. Everything is audited in the service layer."""

from typing import Annotated

from litestar import Controller, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, JSONBody, PathParameter
from litestar.status_codes import HTTP_204_NO_CONTENT
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.safety import resources
from backend.domain.safety.acknowledgement import CrisisAcknowledgement, acknowledge_crisis_screen
from backend.domain.safety.resources import (
    ClinicCrisisEntries,
    CrisisContent,
    CrisisResourcesInput,
)
from backend.identity.access import Scope, access
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.lib.preconditions import IF_MATCH_DESCRIPTION, etag_headers, if_match_versions
from backend.state import Runtime

_CLINICAL = access(Role.CLINICIAN, Role.CLINIC_ADMIN, scope=Scope.CLINIC)
_ADMIN = access(Role.CLINIC_ADMIN, scope=Scope.CLINIC)
_PATIENT = access(Role.PATIENT, scope=Scope.SELF)

Locale = Annotated[str, PathParameter(min_length=2, max_length=16)]


class CrisisResourcesController(Controller):
    path = "/api/v1/clinic/crisis-resources"
    tags = ["safety"]  # noqa: RUF012  (Litestar reads it as a class attribute)
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/", opt=_CLINICAL, summary="The clinic's crisis resources, one entry per locale")
    async def list_entries(
        self, db_session: NamedDependency[AsyncSession], principal: NamedDependency[Principal]
    ) -> ClinicCrisisEntries:
        assert principal.clinic_id is not None  # CLINIC scope
        return await resources.list_entries(db_session, principal.clinic_id)

    @get(
        "/{locale:str}",
        opt=_CLINICAL,
        summary='What a patient with this locale sees ("default": the clinic\'s catch-all), '
        "with the shipped defaults as fallback",
    )
    async def get_entry(
        self,
        locale: Locale,
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
    ) -> Response[CrisisContent]:
        assert principal.clinic_id is not None
        current = await resources.effective_for(db_session, principal.clinic_id, locale)
        return Response(current, headers=etag_headers(current))

    @put(
        "/{locale:str}",
        opt=_ADMIN,
        summary="Set the clinic's crisis resources for a locale",
        description=IF_MATCH_DESCRIPTION,
    )
    async def put_entry(
        self,
        locale: Locale,
        data: JSONBody[CrisisResourcesInput],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[CrisisContent]:
        assert principal.clinic_id is not None
        saved = await resources.save_entry(
            db_session,
            principal,
            principal.clinic_id,
            locale,
            data,
            now=runtime.clock.now(),
            if_match=if_match_versions(if_match),
        )
        return Response(saved, headers=etag_headers(saved))

    @delete(
        "/{locale:str}",
        opt=_ADMIN,
        summary="Remove the clinic's entry for a locale (its patients see the next fallback)",
        description="With `If-Match` (the GET's `ETag`), nothing is removed when someone changed "
        "the entry since it was read (412).",
    )
    async def delete_entry(
        self,
        locale: Locale,
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> None:
        assert principal.clinic_id is not None
        await resources.delete_entry(
            db_session,
            principal,
            principal.clinic_id,
            locale,
            now=runtime.clock.now(),
            if_match=if_match_versions(if_match),
        )


class CrisisAcknowledgementController(Controller):
    path = "/api/v1/me/crisis-acknowledgements"
    tags = ["safety"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @post(
        "/",
        opt=_PATIENT,
        status_code=HTTP_204_NO_CONTENT,
        summary="The patient acknowledged the crisis screen of one of their submissions",
    )
    async def acknowledge(
        self,
        data: JSONBody[CrisisAcknowledgement],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
    ) -> None:
        await acknowledge_crisis_screen(
            db_session, principal, data.response_id, now=runtime.clock.now()
        )
