"""HTTP for clinicians' alerts, N2O session holds and the clinic's alert settings.

Alerts are read and handled by clinicians and clinic admins of the patient's clinic (alerts of
another clinic are "not found"); every read and change is audited in the service layer. The
clinic admin sets the on-call list and the clinic's parameter override.
"""

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import clinic_settings, holds, lifecycle
from backend.domain.alerts.candidate import Severity
from backend.domain.alerts.clinic_settings import OnCallList, ParameterVersion
from backend.domain.alerts.holds import Hold
from backend.domain.alerts.schemas import (
    AlertDetail,
    AlertPage,
    AlertStatus,
    AlertSummary,
    OnCallUpdate,
    ResolveRequest,
)
from backend.identity.access import Scope, access
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.lib.errors import NotFound
from backend.lib.preconditions import IF_MATCH_DESCRIPTION, etag_headers, if_match_versions
from backend.state import Runtime

_CLINICAL = access(Role.CLINICIAN, Role.CLINIC_ADMIN, scope=Scope.CLINIC)
_CLINICAL_FOR_PATIENT = access(Role.CLINICIAN, Role.CLINIC_ADMIN, scope=Scope.PATIENT)
_ADMIN = access(Role.CLINIC_ADMIN, scope=Scope.CLINIC)


class HoldState(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    hold: Hold | None


def _clinic_of(principal: Principal) -> uuid.UUID:
    if principal.clinic_id is None:  # pragma: no cover - CLINIC scope requires a clinic
        raise NotFound("no clinic")
    return principal.clinic_id


class AlertController(Controller):
    path = "/api/v1/alerts"
    tags = ["alerts"]  # noqa: RUF012  (Litestar reads it as a class attribute)
    dependencies = PRINCIPAL_DEPENDENCIES

    @get(
        "/",
        opt=_CLINICAL,
        summary="Alerts of the clinic, most severe then oldest first (filter by status, "
        "severity, patient)",
    )
    async def list_alerts(
        self,
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
        status: FromQuery[list[AlertStatus] | None] = None,
        severity: FromQuery[list[Severity] | None] = None,
        patient: FromQuery[uuid.UUID | None] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> AlertPage:
        return await lifecycle.list_alerts(
            db_session,
            principal,
            statuses=tuple(status) if status else lifecycle.UNRESOLVED,
            severities=tuple(severity or ()),
            patient_id=patient,
            cursor=cursor,
            limit=limit,
            now=runtime.clock.now(),
        )

    @get("/{alert_id:uuid}", opt=_CLINICAL, summary="One alert with its decrypted evidence")
    async def get_alert(
        self,
        alert_id: FromPath[uuid.UUID],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
    ) -> AlertDetail:
        return await lifecycle.get_alert(
            db_session, runtime.keyring, principal, alert_id, now=runtime.clock.now()
        )

    @post(
        "/{alert_id:uuid}/acknowledge",
        opt=_CLINICAL,
        status_code=HTTP_200_OK,
        summary="Acknowledge an alert (stops its escalation)",
    )
    async def acknowledge(
        self,
        alert_id: FromPath[uuid.UUID],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
    ) -> AlertSummary:
        return await lifecycle.acknowledge(db_session, principal, alert_id, now=runtime.clock.now())

    @post(
        "/{alert_id:uuid}/resolve",
        opt=_CLINICAL,
        status_code=HTTP_200_OK,
        summary="Resolve an alert with an outcome and a note",
    )
    async def resolve(
        self,
        alert_id: FromPath[uuid.UUID],
        data: JSONBody[ResolveRequest],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
    ) -> AlertSummary:
        return await lifecycle.resolve(
            db_session, runtime.keyring, principal, alert_id, data, now=runtime.clock.now()
        )


class N2OHoldController(Controller):
    path = "/api/v1/patients/{patient_id:uuid}/n2o-hold"
    tags = ["alerts"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/", opt=_CLINICAL_FOR_PATIENT, summary="The patient's active N2O session hold, if any")
    async def get_hold(
        self,
        patient_id: FromPath[uuid.UUID],
        db_session: NamedDependency[AsyncSession],
    ) -> HoldState:
        return HoldState(hold=await holds.n2o_hold_for(db_session, patient_id))

    @post(
        "/clear",
        opt=_CLINICAL_FOR_PATIENT,
        status_code=HTTP_200_OK,
        summary="Clear the patient's N2O session hold (audited)",
    )
    async def clear_hold(
        self,
        patient_id: FromPath[uuid.UUID],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
    ) -> Hold:
        return await holds.clear_hold(db_session, principal, patient_id, now=runtime.clock.now())


class AlertSettingsController(Controller):
    path = "/api/v1/clinic"
    tags = ["alerts"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/alert-on-call", opt=_CLINICAL, summary="The clinic's on-call list, in order")
    async def get_on_call(
        self, db_session: NamedDependency[AsyncSession], principal: NamedDependency[Principal]
    ) -> Response[OnCallList]:
        current = await clinic_settings.on_call(db_session, _clinic_of(principal))
        return Response(current, headers=etag_headers(current))

    @put(
        "/alert-on-call",
        opt=_ADMIN,
        summary="Replace the clinic's on-call list",
        description=IF_MATCH_DESCRIPTION,
    )
    async def put_on_call(
        self,
        data: JSONBody[OnCallUpdate],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[OnCallList]:
        saved = await clinic_settings.replace_on_call(
            db_session,
            principal,
            _clinic_of(principal),
            data.staff_ids,
            now=runtime.clock.now(),
            if_match=if_match_versions(if_match),
        )
        return Response(saved, headers=etag_headers(saved))

    @get(
        "/alert-parameters",
        opt=_CLINICAL,
        summary="The alert parameters in force: version and the clinic's override",
    )
    async def get_parameters(
        self, db_session: NamedDependency[AsyncSession], principal: NamedDependency[Principal]
    ) -> Response[ParameterVersion]:
        current = await clinic_settings.current_parameters(db_session, _clinic_of(principal))
        return Response(current, headers=etag_headers(current))

    @put(
        "/alert-parameters",
        opt=_ADMIN,
        summary="Save a new version of the clinic's alert parameter override",
        description=IF_MATCH_DESCRIPTION,
    )
    async def put_parameters(
        self,
        data: JSONBody[dict[str, Any]],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[ParameterVersion]:
        saved = await clinic_settings.save_parameter_override(
            db_session,
            principal,
            _clinic_of(principal),
            data,
            now=runtime.clock.now(),
            if_match=if_match_versions(if_match),
        )
        return Response(saved, headers=etag_headers(saved))
