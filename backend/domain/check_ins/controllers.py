"""HTTP routes for a clinic's check-in protocols: read the one in force per modality (clinicians
and clinic admins), replace or remove the clinic's override (clinic admins; audited).

A saved override applies to courses started after it; a course under way keeps the protocol it
started with, so its planned check-ins do not move (`clinic_protocols`).
"""

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.check_ins import clinic_protocols
from backend.domain.check_ins.protocols import MODALITIES, Modality
from backend.domain.check_ins.schemas import ClinicProtocols, ClinicProtocolView
from backend.identity.access import Scope, access
from backend.identity.audit_trail import audit
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.lib.errors import NotFound
from backend.lib.preconditions import IF_MATCH_DESCRIPTION, etag_headers, if_match_versions
from backend.state import Runtime

_READERS = access(Role.CLINICIAN, Role.CLINIC_ADMIN, scope=Scope.CLINIC)
_ADMIN = access(Role.CLINIC_ADMIN, scope=Scope.CLINIC)


def _clinic_of(principal: Principal) -> uuid.UUID:
    if principal.clinic_id is None:  # pragma: no cover - CLINIC scope requires a clinic
        raise NotFound("no clinic")
    return principal.clinic_id


def _modality(value: str) -> Modality:
    for modality in MODALITIES:
        if value == modality:
            return modality
    raise NotFound(f"no check-in protocol for modality {value!r}; known: {', '.join(MODALITIES)}")


class ClinicProtocolController(Controller):
    path = "/api/v1/clinic/check-in-protocols"
    tags = ["check-in protocols"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("", opt=_READERS, summary="The check-in protocol new courses follow, per modality")
    async def list_protocols(
        self, principal: NamedDependency[Principal], db_session: NamedDependency[AsyncSession]
    ) -> ClinicProtocols:
        connection = await db_session.connection()
        clinic_id = _clinic_of(principal)
        return ClinicProtocols(
            protocols=[
                await clinic_protocols.protocol_view(connection, clinic_id, m) for m in MODALITIES
            ]
        )

    @get("/{modality:str}", opt=_READERS, summary="The check-in protocol of one modality")
    async def get_protocol(
        self,
        modality: FromPath[str],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[ClinicProtocolView]:
        connection = await db_session.connection()
        current = await clinic_protocols.protocol_view(
            connection, _clinic_of(principal), _modality(modality)
        )
        return Response(current, headers=etag_headers(current))

    @put(
        "/{modality:str}",
        opt=_ADMIN,
        summary="Save the clinic's override of a modality's protocol (for courses started after)",
        description=IF_MATCH_DESCRIPTION,
    )
    async def put_override(
        self,
        modality: FromPath[str],
        data: JSONBody[dict[str, Any]],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[ClinicProtocolView]:
        chosen = _modality(modality)
        clinic_id = _clinic_of(principal)
        protocol = await clinic_protocols.save_override(
            db_session,
            clinic_id=clinic_id,
            modality=chosen,
            document=msgspec.json.encode(data),
            staff_id=principal.subject_id,
            now=runtime.clock.now(),
            if_match=if_match_versions(if_match),
        )
        await audit(
            db_session,
            runtime,
            action="check_in_protocol.update",
            resource_type="check_in_protocol",
            resource_id=f"{chosen}:{protocol.id}@{protocol.version}",
            clinic_id=clinic_id,
            purpose="operations",
            actor=principal,
        )
        connection = await db_session.connection()
        saved = await clinic_protocols.protocol_view(connection, clinic_id, chosen)
        return Response(saved, headers=etag_headers(saved))

    @delete(
        "/{modality:str}",
        opt=_ADMIN,
        status_code=200,
        summary="Remove the clinic's override: new courses follow the shipped default again",
        description="With `If-Match` (the GET's `ETag`), nothing is removed when someone changed "
        "the protocol since it was read (412).",
    )
    async def delete_override(
        self,
        modality: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[ClinicProtocolView]:
        chosen = _modality(modality)
        clinic_id = _clinic_of(principal)
        if await clinic_protocols.remove_override(
            db_session, clinic_id=clinic_id, modality=chosen, if_match=if_match_versions(if_match)
        ):
            await audit(
                db_session,
                runtime,
                action="check_in_protocol.delete",
                resource_type="check_in_protocol",
                resource_id=chosen,
                clinic_id=clinic_id,
                purpose="operations",
                actor=principal,
            )
        connection = await db_session.connection()
        shown = await clinic_protocols.protocol_view(connection, clinic_id, chosen)
        return Response(shown, headers=etag_headers(shown))
