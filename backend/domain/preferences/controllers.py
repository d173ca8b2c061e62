"""Notification preferences over HTTP.

- A patient's channels and quiet hours: the patient themself or their clinic's clinicians
  (``/api/v1/patients/{patient_id}/notification-preferences``). Quiet hours are written through
  the sessions service, so a change moves every unsent check-in in the same transaction.
- A clinician's own channel and on-call state (``/api/v1/staff/me/notification-preferences``),
  and a clinic admin setting them for someone in the clinic.

Two people can edit the same preferences, so GETs answer with an ``ETag`` and PUTs accept it
back as ``If-Match`` (a stale copy is refused with 412: `backend.lib.preconditions`).
"""

from datetime import time
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Response, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.staff import StaffMember
from backend.domain.check_ins.quiet_hours import QuietHours
from backend.domain.preferences import service
from backend.domain.preferences.rules import PatientChannel, StaffChannel, StaffPreferences
from backend.domain.preferences.service import PatientPreferencesView, StaffPreferencesView
from backend.domain.sessions import service as sessions
from backend.identity.access import Scope, access
from backend.identity.audit_trail import audit
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.lib.errors import FieldProblem, InvalidInput, NotFound
from backend.lib.preconditions import IF_MATCH_DESCRIPTION, etag_headers, if_match_versions
from backend.state import Runtime

LocalTime = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
CLINICAL = (Role.CLINICIAN, Role.CLINIC_ADMIN)


class PatientPreferencesInput(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Channels in order of preference (``sms`` is the opt-in to text messages); quiet hours as
    local "HH:MM" (both or neither; equal start and end = none)."""

    channels: Annotated[list[PatientChannel], msgspec.Meta(min_length=1, max_length=2)]
    quiet_hours_start: LocalTime | None = None
    quiet_hours_end: LocalTime | None = None


class StaffPreferencesInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: StaffChannel = "email"
    webhook_endpoint: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    on_call: bool = True


async def _audit_patient(
    db_session: AsyncSession, runtime: Runtime, principal: Principal, action: str, patient_id: UUID
) -> None:
    patient = await sessions.get_patient(db_session, patient_id)
    await audit(
        db_session,
        runtime,
        action=action,
        resource_type="notification_preferences",
        resource_id=patient_id,
        clinic_id=patient.clinic_id,
        purpose="treatment",
        actor=principal,
    )


class PatientPreferencesController(Controller):
    path = "/api/v1/patients/{patient_id:uuid}/notification-preferences"
    tags = ["notification preferences"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @get(
        "",
        opt=access(Role.PATIENT, *CLINICAL, scope=Scope.PATIENT),
        summary="How the patient is reached: channels in order, quiet hours",
    )
    async def read(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[PatientPreferencesView]:
        view = await service.patient_preferences(db_session, patient_id)
        await _audit_patient(db_session, runtime, principal, "read", patient_id)
        return Response(view, headers=etag_headers(view))

    @put(
        "",
        opt=access(Role.PATIENT, *CLINICAL, scope=Scope.PATIENT),
        summary="Choose channels (SMS is an opt-in) and quiet hours; unsent check-ins move",
        description=IF_MATCH_DESCRIPTION,
    )
    async def change(
        self,
        patient_id: FromPath[UUID],
        data: JSONBody[PatientPreferencesInput],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[PatientPreferencesView]:
        versions = if_match_versions(if_match)
        if len(set(data.channels)) != len(data.channels):
            raise InvalidInput(
                "each channel at most once",
                errors=[
                    FieldProblem(
                        pointer="/channels", code="duplicate", message="each channel at most once"
                    )
                ],
            )
        if (data.quiet_hours_start is None) != (data.quiet_hours_end is None):
            raise InvalidInput("give both quiet_hours_start and quiet_hours_end, or neither")
        quiet_hours = None
        if data.quiet_hours_start is not None and data.quiet_hours_end is not None:
            quiet_hours = QuietHours(
                start=time.fromisoformat(data.quiet_hours_start),
                end=time.fromisoformat(data.quiet_hours_end),
            )
        saved = await service.save_patient_preferences(
            db_session,
            patient_id,
            list(data.channels),
            quiet_hours,
            by=principal.subject_id,
            now=runtime.clock.now(),
            if_match=versions,
        )
        await _audit_patient(db_session, runtime, principal, "notification_preferences", patient_id)
        return Response(saved, headers=etag_headers(saved))


async def _save_staff(
    db_session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    staff_id: UUID,
    data: StaffPreferencesInput,
    if_match: str | None,
) -> Response[StaffPreferencesView]:
    versions = if_match_versions(if_match)
    if data.channel == "webhook":
        endpoints = runtime.notifications.webhook.endpoints if runtime.notifications.webhook else {}
        if data.webhook_endpoint is None or data.webhook_endpoint not in endpoints:
            problem = "name one of the clinic's configured webhook endpoints"
            raise InvalidInput(
                problem,
                errors=[
                    FieldProblem(
                        pointer="/webhook_endpoint", code="unknown_endpoint", message=problem
                    )
                ],
            )
    preferences = StaffPreferences(
        channel=data.channel,
        webhook_endpoint=data.webhook_endpoint if data.channel == "webhook" else None,
        on_call=data.on_call,
    )
    saved = await service.save_staff_preferences(
        db_session, staff_id, preferences, now=runtime.clock.now(), if_match=versions
    )
    await audit(
        db_session,
        runtime,
        action="notification_preferences",
        resource_type="staff",
        resource_id=staff_id,
        clinic_id=principal.clinic_id,
        purpose="operations",
        actor=principal,
    )
    return Response(saved, headers=etag_headers(saved))


async def _colleague(db_session: AsyncSession, principal: Principal, staff_id: UUID) -> None:
    """NotFound unless ``staff_id`` is a staff member of the caller's clinic."""
    member = (
        await db_session.exec(select(StaffMember).where(col(StaffMember.id) == staff_id))
    ).first()
    if member is None or member.clinic_id != principal.clinic_id:
        raise NotFound("no such staff member in this clinic")


class StaffPreferencesController(Controller):
    path = "/api/v1"
    tags = ["notification preferences"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @get(
        "/staff/me/notification-preferences",
        opt=access(*CLINICAL, scope=Scope.SELF),
        summary="How alerts and tasks reach me, and whether I am on call",
    )
    async def read_mine(
        self, principal: NamedDependency[Principal], db_session: NamedDependency[AsyncSession]
    ) -> Response[StaffPreferencesView]:
        view = await service.staff_preferences(db_session, principal.subject_id)
        return Response(view, headers=etag_headers(view))

    @put(
        "/staff/me/notification-preferences",
        opt=access(*CLINICAL, scope=Scope.SELF),
        summary="Choose e-mail or a clinic webhook (pager, chat); go on or off call",
        description=IF_MATCH_DESCRIPTION,
    )
    async def change_mine(
        self,
        data: JSONBody[StaffPreferencesInput],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[StaffPreferencesView]:
        return await _save_staff(
            db_session, runtime, principal, principal.subject_id, data, if_match
        )

    @get(
        "/clinic/staff/{staff_id:uuid}/notification-preferences",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.CLINIC),
        summary="A colleague's channel and on-call state, as a clinic admin sees them",
    )
    async def read_colleague(
        self,
        staff_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[StaffPreferencesView]:
        await _colleague(db_session, principal, staff_id)
        view = await service.staff_preferences(db_session, staff_id)
        return Response(view, headers=etag_headers(view))

    @put(
        "/clinic/staff/{staff_id:uuid}/notification-preferences",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.CLINIC),
        summary="A clinic admin sets a colleague's channel and on-call state",
        description=IF_MATCH_DESCRIPTION,
    )
    async def change_colleague(
        self,
        staff_id: FromPath[UUID],
        data: JSONBody[StaffPreferencesInput],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[StaffPreferencesView]:
        await _colleague(db_session, principal, staff_id)
        return await _save_staff(db_session, runtime, principal, staff_id, data, if_match)
