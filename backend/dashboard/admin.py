"""Clinic administration: staff, care teams, on-call list, protocols, alert rule parameters.

The forms call the same service functions as the JSON API (``backend.identity.staff``,
``backend.domain.alerts.clinic_settings``), which validate, check the clinic and write the audit
rows; the routes carry the API's access rule (clinic admins of their own clinic) and every form
the dashboard's CSRF token. A refused change re-renders the page with the reason and changes
nothing. Check-in protocol overrides go through ``backend.domain.check_ins.clinic_protocols``
(its checks and version history) with the audit rows its API writes.

The forms that replace a whole object (clinic settings, on-call list, alert parameters, a
protocol override and its removal) carry the entity tag the API serves as ``ETag`` in a hidden
``version`` field and pass it on as the service's ``if_match``: a save from a page another save
outdated is refused (412) with nothing written, and the page re-rendered shows what is in force.
The forms that add one staff member, care team or team member need no tag: they change nothing
another admin's page showed (a duplicate is refused by the service, adding a member is a no-op).
Nor do the one-shot actions on one account or membership (disable, enable, a new role, a
removal from a team): each says what it should be afterwards, so repeating it changes nothing,
as in the API.
"""

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final
from zoneinfo import ZoneInfo, available_timezones

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Response, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.dashboard import queries
from backend.dashboard.alert_views import alert_settings
from backend.dashboard.pages import page, refusal_reason
from backend.dashboard.patients import audit_as_api
from backend.domain.alerts import clinic_settings
from backend.domain.check_ins import clinic_protocols
from backend.domain.check_ins.protocols import MODALITIES, Modality, Protocol, default_protocol
from backend.identity import repositories, staff_admin
from backend.identity import staff as staff_service
from backend.identity.access import Scope, access
from backend.identity.audit_trail import audit
from backend.identity.identifiers import FieldSealer
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.identity.schemas import NewCareTeam, NewStaffMember
from backend.lib.errors import DomainError, InvalidInput, NotFound
from backend.lib.preconditions import entity_tag
from backend.state import Runtime

_ADMIN: Final = access(Role.CLINIC_ADMIN, scope=Scope.CLINIC)
ADMIN_PATH: Final = "/dashboard/admin"
# Roles a clinic admin may create (the API's ``NewStaffMember``).
NEW_STAFF_ROLES: Final = {
    "clinician": "Clinician",
    "clinic_admin": "Clinic admin",
    "researcher": "Researcher",
}
_ON_CALL_ROLES: Final = frozenset({Role.CLINICIAN.value, Role.CLINIC_ADMIN.value})
# Spare empty places in the on-call form, so one more person can be added in one go.
_SPARE_ON_CALL_SLOTS: Final = 2


@functools.cache
def time_zone_suggestions() -> tuple[str, ...]:
    """The settings form's suggestions: places, not aliases or fixed offsets (the server accepts
    any zone its tz database knows). Read on first use: walking the tz database takes ~30 ms,
    which start-up need not pay."""
    places = sorted(
        z
        for z in available_timezones()
        if "/" in z and not z.startswith(("Etc/", "SystemV/", "US/", "posix", "right/"))
    )
    return ("UTC", *places)


class StaffForm(msgspec.Struct, kw_only=True):
    role: str = ""
    name: str = ""
    email: str = ""


class RoleForm(msgspec.Struct, kw_only=True):
    role: str = ""


class CareTeamForm(msgspec.Struct, kw_only=True):
    name: str = ""


class MemberForm(msgspec.Struct, kw_only=True):
    staff_id: str = ""


class SettingsForm(msgspec.Struct, kw_only=True):
    totp_required_for_all_staff: str = ""
    time_zone: str = ""  # empty: unchanged
    version: str = ""  # entity tag of the clinic view the form was drawn from (If-Match)


class ParametersForm(msgspec.Struct, kw_only=True):
    document: str = ""
    version: str = ""  # entity tag of the parameters the form was drawn from (If-Match)


class ProtocolForm(msgspec.Struct, kw_only=True):
    document: str = ""
    version: str = ""  # entity tag of the protocol view the form was drawn from (If-Match)


class ProtocolPanel(msgspec.Struct, frozen=True, kw_only=True):
    """One modality: the protocol new courses follow, and the override form's text."""

    modality: str
    protocol: Protocol
    shipped: str
    overridden: bool
    draft: str
    version: str
    """Entity tag of what the API's GET of this modality shows: the forms' If-Match."""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the last form did, shown in its section (``section`` is the id of its heading)."""

    section: str
    message: str
    error: bool = False
    one_time_password: str | None = None


def parse_staff_id(value: str, *, pointer: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise InvalidInput(f"{pointer}: not a staff member of this clinic") from None


def on_call_choice(values: list[str]) -> list[uuid.UUID]:
    """The on-call form's places in order; empty places are skipped, not refused."""
    return [
        parse_staff_id(value, pointer=f"place {n}")
        for n, value in enumerate(values, start=1)
        if value.strip()
    ]


def drawn_from(version: object) -> frozenset[str] | None:
    """The form's hidden ``version`` as the service's ``if_match``; a form without one (a page
    saved before versions existed) writes unconditionally, as an API call without If-Match."""
    if not isinstance(version, str) or not version:
        return None
    return frozenset({version})


def parameter_document(text: str) -> dict[str, Any]:
    try:
        document = msgspec.json.decode(text.strip().encode())
    except msgspec.DecodeError:
        raise InvalidInput("the override is not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidInput("the override must be a JSON object")
    return document


def modality_of(value: str) -> Modality:
    for modality in MODALITIES:
        if value == modality:
            return modality
    raise NotFound("no check-in protocol for this modality")


def protocol_document(text: str) -> bytes:
    """The override as the service takes it: a JSON object (the service checks the rest)."""
    return msgspec.json.encode(parameter_document(text))


def _protocol_skeleton(modality: Modality) -> dict[str, Any]:
    shipped = default_protocol(modality)
    return {
        "id": f"clinic-{modality}",
        "version": "1.0.0",
        "extends": {"id": shipped.id, "version": shipped.version},
        "source": "why this clinic changes the protocol",
        "steps": {},
    }


async def _protocol_panels(
    connection: AsyncConnection, clinic_id: uuid.UUID, drafts: dict[str, str]
) -> list[ProtocolPanel]:
    panels = []
    for modality in MODALITIES:
        stored = await clinic_protocols.stored_override(connection, clinic_id, modality)
        shipped = default_protocol(modality)
        document = (
            msgspec.json.decode(stored.document)
            if stored is not None
            else _protocol_skeleton(modality)
        )
        protocol = clinic_protocols.protocol_of(clinic_id, modality, stored)
        panels.append(
            ProtocolPanel(
                modality=modality,
                protocol=protocol,
                shipped=f"{shipped.id} v{shipped.version}",
                overridden=stored is not None,
                draft=drafts.get(modality)
                or msgspec.json.format(msgspec.json.encode(document).decode(), indent=2),
                version=entity_tag(clinic_protocols.view_of(modality, stored, protocol)),
            )
        )
    return panels


def _draft_override(current: dict[str, Any] | None) -> str:
    """The text the parameter form starts from: the override in force, or a skeleton."""
    document = current or {"parameterSet": "clinic", "version": "1", "slaMinutes": {}}
    return msgspec.json.format(msgspec.json.encode(document).decode(), indent=2)


async def _overview(
    principal: Principal,
    runtime: Runtime,
    db_session: AsyncSession,
    *,
    outcome: Outcome | None = None,
    parameters_draft: str | None = None,
    protocol_drafts: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    assert principal.clinic_id is not None
    clinic_id = principal.clinic_id
    connection = await db_session.connection()
    members: list[dict[str, Any]] = []
    for row in await queries.clinic_staff(connection, clinic_id):
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
                "last_login_at": row.last_login_at,
            }
        )
    names = {m["id"]: m["name"] for m in members}
    clinical = [m for m in members if m["role"] in _ON_CALL_ROLES and m["status"] == "active"]
    teams = await staff_service.list_care_teams(db_session, principal)
    settings = await alert_settings(db_session, clinic_id)
    history = await queries.parameter_override_history(connection, clinic_id)
    clinic = await repositories.get_clinic(db_session, clinic_id)
    if clinic is None:
        raise NotFound("no such clinic")
    protocols = await _protocol_panels(connection, clinic_id, protocol_drafts or {})
    slots = min(len(clinical), len(settings.on_call) + _SPARE_ON_CALL_SLOTS)
    await audit_as_api(
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
        status_code=status_code,
        zone=ZoneInfo(clinic.time_zone),
        time_zones=time_zone_suggestions(),
        clinic=staff_service.clinic_view(clinic),
        members=members,
        me=principal.subject_id,
        clinical=clinical,
        names=names,
        teams=teams,
        clinic_tag=entity_tag(staff_service.clinic_view(clinic)),
        settings=settings,
        on_call_slots=max(slots, len(settings.on_call)),
        history=history,
        parameters_draft=parameters_draft or _draft_override(settings.override),
        protocols=protocols,
        roles=NEW_STAFF_ROLES,
        outcome=outcome,
    )


class DashboardAdminController(Controller):
    path = "/admin"
    dependencies = PRINCIPAL_DEPENDENCIES

    async def _refused(
        self,
        error: DomainError,
        section: str,
        principal: Principal,
        runtime: Runtime,
        db_session: AsyncSession,
        **context: Any,
    ) -> Template:
        # Nothing of the refused change may be committed with the page's audit row.
        await db_session.rollback()
        message = refusal_reason(error)
        return await _overview(
            principal,
            runtime,
            db_session,
            outcome=Outcome(section=section, message=message, error=True),
            status_code=error.status_code,
            **context,
        )

    async def _then_back(
        self,
        section: str,
        change: Callable[[], Awaitable[object]],
        principal: Principal,
        runtime: Runtime,
        db_session: AsyncSession,
        *,
        anchor: str | None = None,
    ) -> Response[Any]:
        """Make the form's change, then back to its section of the page (Post/Redirect/Get), or
        the page again with the reason when it is refused."""
        try:
            await change()
        except DomainError as error:
            return await self._refused(error, section, principal, runtime, db_session)
        return Redirect(path=f"{ADMIN_PATH}#{anchor or section}", status_code=HTTP_303_SEE_OTHER)

    @get("/", opt=_ADMIN, name="dashboard-admin")
    async def overview(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        return await _overview(principal, runtime, db_session)

    @post("/on-call", opt=_ADMIN, status_code=303)
    async def save_on_call(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        assert principal.clinic_id is not None
        form = await request.form()
        try:
            # No place filled in at all is an empty list (clear the on-call list), not a 500.
            chosen = on_call_choice([str(v) for v in form.getall("staff_id", [])])
            await clinic_settings.replace_on_call(
                db_session,
                principal,
                principal.clinic_id,
                chosen,
                now=runtime.clock.now(),
                if_match=drawn_from(form.get("version")),
            )
        except DomainError as error:
            return await self._refused(error, "oncall", principal, runtime, db_session)
        return Redirect(path=ADMIN_PATH + "#oncall", status_code=HTTP_303_SEE_OTHER)

    @post("/alert-parameters", opt=_ADMIN, status_code=303)
    async def save_parameters(
        self,
        data: URLEncodedBody[ParametersForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        assert principal.clinic_id is not None
        try:
            await clinic_settings.save_parameter_override(
                db_session,
                principal,
                principal.clinic_id,
                parameter_document(data.document),
                now=runtime.clock.now(),
                if_match=drawn_from(data.version),
            )
        except DomainError as error:
            # Keep what was typed, so a typo costs one fix, not the whole edit.
            return await self._refused(
                error,
                "parameters",
                principal,
                runtime,
                db_session,
                parameters_draft=data.document,
            )
        return Redirect(path=ADMIN_PATH + "#parameters", status_code=HTTP_303_SEE_OTHER)

    @post("/staff", opt=_ADMIN, status_code=201)
    async def add_staff(
        self,
        data: URLEncodedBody[StaffForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        try:
            try:
                wanted = msgspec.convert(
                    {"role": data.role, "email": data.email.strip(), "name": data.name.strip()},
                    NewStaffMember,
                )
            except msgspec.ValidationError:
                raise InvalidInput("choose a role and give a name and a valid email") from None
            created = await staff_service.create_staff(
                db_session,
                runtime,
                clinic_id=principal.clinic_id,
                role=Role(wanted.role),
                email=wanted.email,
                name=wanted.name,
                created_by=principal,
            )
        except DomainError as error:
            return await self._refused(error, "staff", principal, runtime, db_session)
        # Shown once, on this response only (pages are no-store): the admin passes it on.
        return await _overview(
            principal,
            runtime,
            db_session,
            outcome=Outcome(
                section="staff",
                message=f"Account created for {wanted.name}. Give them this one-time password; "
                "they set up their authenticator app at first login.",
                one_time_password=created.one_time_password,
            ),
            status_code=201,
        )

    @post("/staff/{staff_id:uuid}/disable", opt=_ADMIN, status_code=303)
    async def disable_staff(
        self,
        staff_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        return await self._then_back(
            "staff",
            lambda: staff_admin.disable_staff(db_session, runtime, principal, staff_id),
            principal,
            runtime,
            db_session,
        )

    @post("/staff/{staff_id:uuid}/enable", opt=_ADMIN, status_code=303)
    async def enable_staff(
        self,
        staff_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        return await self._then_back(
            "staff",
            lambda: staff_admin.enable_staff(db_session, runtime, principal, staff_id),
            principal,
            runtime,
            db_session,
        )

    @post("/staff/{staff_id:uuid}/role", opt=_ADMIN, status_code=303)
    async def change_role(
        self,
        staff_id: FromPath[uuid.UUID],
        data: URLEncodedBody[RoleForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:

        async def change() -> None:
            if data.role not in NEW_STAFF_ROLES:
                raise InvalidInput("choose a clinician, clinic admin or researcher role")
            await staff_admin.change_role(db_session, runtime, principal, staff_id, Role(data.role))

        return await self._then_back("staff", change, principal, runtime, db_session)

    @post("/settings", opt=_ADMIN, status_code=303)
    async def save_settings(
        self,
        data: URLEncodedBody[SettingsForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        return await self._then_back(
            "settings",
            lambda: staff_service.update_clinic_settings(
                db_session,
                runtime,
                principal,
                totp_required_for_all_staff=data.totp_required_for_all_staff == "on",
                time_zone=data.time_zone.strip() or None,
                if_match=drawn_from(data.version),
            ),
            principal,
            runtime,
            db_session,
            anchor="staff",
        )

    @post("/care-teams", opt=_ADMIN, status_code=303)
    async def add_care_team(
        self,
        data: URLEncodedBody[CareTeamForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:

        async def create() -> None:
            try:
                wanted = msgspec.convert({"name": data.name.strip()}, NewCareTeam)
            except msgspec.ValidationError:
                raise InvalidInput("give the care team a name (up to 120 characters)") from None
            await staff_service.create_care_team(db_session, runtime, principal, wanted.name)

        return await self._then_back("teams", create, principal, runtime, db_session)

    @post("/care-teams/{care_team_id:uuid}/members", opt=_ADMIN, status_code=303)
    async def add_care_team_member(
        self,
        care_team_id: FromPath[uuid.UUID],
        data: URLEncodedBody[MemberForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:

        async def add() -> None:
            staff_id = parse_staff_id(data.staff_id, pointer="member")
            await staff_service.add_care_team_member(
                db_session, runtime, principal, care_team_id, staff_id
            )

        return await self._then_back("teams", add, principal, runtime, db_session)

    @post(
        "/care-teams/{care_team_id:uuid}/members/{staff_id:uuid}/remove",
        opt=_ADMIN,
        status_code=303,
    )
    async def remove_care_team_member(
        self,
        care_team_id: FromPath[uuid.UUID],
        staff_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        return await self._then_back(
            "teams",
            lambda: staff_admin.remove_care_team_member(
                db_session, runtime, principal, care_team_id, staff_id
            ),
            principal,
            runtime,
            db_session,
        )

    @post("/protocols/{modality:str}", opt=_ADMIN, status_code=303)
    async def save_protocol(
        self,
        modality: FromPath[str],
        data: URLEncodedBody[ProtocolForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        assert principal.clinic_id is not None
        try:
            chosen = modality_of(modality)
            protocol = await clinic_protocols.save_override(
                db_session,
                clinic_id=principal.clinic_id,
                modality=chosen,
                document=protocol_document(data.document),
                staff_id=principal.subject_id,
                now=runtime.clock.now(),
                if_match=drawn_from(data.version),
            )
        except DomainError as error:
            return await self._refused(
                error,
                "protocols",
                principal,
                runtime,
                db_session,
                protocol_drafts={modality: data.document},
            )
        # The audit row the API writes for the same change (ClinicProtocolController).
        await audit(
            db_session,
            runtime,
            action="check_in_protocol.update",
            resource_type="check_in_protocol",
            resource_id=f"{chosen}:{protocol.id}@{protocol.version}",
            clinic_id=principal.clinic_id,
            purpose="operations",
            actor=principal,
        )
        return Redirect(path=ADMIN_PATH + "#protocols", status_code=HTTP_303_SEE_OTHER)

    @post("/protocols/{modality:str}/remove", opt=_ADMIN, status_code=303)
    async def remove_protocol(
        self,
        modality: FromPath[str],
        data: URLEncodedBody[ProtocolForm],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        assert principal.clinic_id is not None
        chosen = modality_of(modality)
        try:
            removed = await clinic_protocols.remove_override(
                db_session,
                clinic_id=principal.clinic_id,
                modality=chosen,
                if_match=drawn_from(data.version),
            )
        except DomainError as error:
            return await self._refused(error, "protocols", principal, runtime, db_session)
        if removed:
            await audit(
                db_session,
                runtime,
                action="check_in_protocol.delete",
                resource_type="check_in_protocol",
                resource_id=chosen,
                clinic_id=principal.clinic_id,
                purpose="operations",
                actor=principal,
            )
        return Redirect(path=ADMIN_PATH + "#protocols", status_code=HTTP_303_SEE_OTHER)
