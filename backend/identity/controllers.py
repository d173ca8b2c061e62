"""HTTP routes of the identity area, each with its access rule (``backend.identity.access``)."""

from typing import Annotated, Any, NoReturn
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, Parameter
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.identity import consent, login, patients, sessions, staff, staff_admin
from backend.identity.access import Scope, access
from backend.identity.errors import RecordedDenial
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal
from backend.identity.roles import Role
from backend.identity.schemas import (
    CareTeamView,
    ClinicSettings,
    ClinicView,
    CodeRedemption,
    ConsentChange,
    ConsentSaved,
    ConsentView,
    CreatedPatient,
    CreatedStaffMember,
    DeviceUpdate,
    DeviceView,
    Enrolled,
    EnrolmentCodeView,
    Me,
    NewCareTeam,
    NewCareTeamMember,
    NewPatient,
    NewStaffMember,
    PasswordChange,
    PatientLookup,
    PatientPage,
    PatientSignedOut,
    PatientView,
    RefreshRequest,
    StaffLogin,
    StaffLoginResult,
    StaffPage,
    TokenPair,
    TotpConfirmation,
    TotpEnrolment,
)
from backend.lib.errors import NotFound
from backend.lib.preconditions import (
    IF_MATCH_DESCRIPTION,
    etag_headers,
    if_match_versions,
    required_if_match_versions,
)
from backend.state import Runtime

ALL_STAFF = (Role.CLINICIAN, Role.CLINIC_ADMIN, Role.RESEARCHER, Role.OPERATOR)
CLINICAL = (Role.CLINICIAN, Role.CLINIC_ADMIN)
PUBLIC = {"public": True}
CONSENT_IF_MATCH_DESCRIPTION = (
    "Send the `ETag` of the GET as `If-Match`. Required (428 without it, or with `*`): consent "
    "is only changed from the version the caller read. If it changed since, nothing is written "
    "and the answer is 412."
)
OWN_CONSENT_DESCRIPTION = (
    "Withdraw monitoring and/or research consent (send `false`). Turning a consent on is "
    "refused (403): the clinic records consent. Withdrawing monitoring stops check-ins at once "
    "and ends the app's session at its next refresh. " + IF_MATCH_DESCRIPTION
)


def client_address(request: Request[Any, Any, Any]) -> str:
    # Behind a reverse proxy this is the proxy unless the server is told to trust its
    # X-Forwarded-For (uvicorn --forwarded-allow-ips); see deploy/ for the proxy setup.
    return request.client.host if request.client is not None else "unknown"


async def commit_and_raise(db_session: AsyncSession, denial: RecordedDenial) -> NoReturn:
    """Keep what a refusal recorded (audit row, failure count, revoked family), then refuse."""
    await db_session.commit()
    raise denial.error from None


class SessionController(Controller):
    path = "/api/v1/auth"
    tags = ["sessions"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @post("/staff/login", opt=PUBLIC, status_code=200, summary="Staff login (password + TOTP)")
    async def staff_login(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[StaffLogin],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> StaffLoginResult:
        try:
            return await login.log_in(db_session, runtime, data, source=client_address(request))
        except RecordedDenial as denial:
            await commit_and_raise(db_session, denial)

    @post("/refresh", opt=PUBLIC, status_code=200, summary="Exchange a refresh token (rotates)")
    async def refresh(
        self,
        data: JSONBody[RefreshRequest],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> TokenPair:
        try:
            return await sessions.rotate(db_session, runtime, data.refresh_token)
        except RecordedDenial as denial:
            await commit_and_raise(db_session, denial)

    @post("/logout", opt=access(*ALL_STAFF, Role.PATIENT, scope=Scope.SELF), status_code=204)
    async def logout(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> None:
        await sessions.end_session(db_session, runtime, principal)

    @post(
        "/revoke-all",
        opt=access(*ALL_STAFF, Role.PATIENT, scope=Scope.SELF),
        status_code=204,
        summary="Log out everywhere: every session and device of the caller",
    )
    async def revoke_all(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> None:
        await sessions.end_all_sessions(db_session, runtime, principal)

    @post(
        "/staff/totp",
        opt=access(*ALL_STAFF, scope=Scope.SELF, allow_totp_enrolment=True),
        status_code=201,
        summary="Start TOTP enrolment: a new secret and its otpauth URI, shown once",
    )
    async def totp_enrol(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> TotpEnrolment:
        return await login.begin_totp_enrolment(db_session, runtime, principal)

    @post(
        "/staff/totp/confirm",
        opt=access(*ALL_STAFF, scope=Scope.SELF, allow_totp_enrolment=True),
        status_code=200,
        summary="Confirm TOTP enrolment with a code; returns a full session",
    )
    async def totp_confirm(
        self,
        data: JSONBody[TotpConfirmation],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> TokenPair:
        try:
            return await login.confirm_totp_enrolment(db_session, runtime, principal, data.code)
        except RecordedDenial as denial:
            await commit_and_raise(db_session, denial)

    @post("/staff/password", opt=access(*ALL_STAFF, scope=Scope.SELF), status_code=204)
    async def change_password(
        self,
        data: JSONBody[PasswordChange],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> None:
        try:
            await login.change_password(
                db_session, runtime, principal, data.current_password, data.new_password
            )
        except RecordedDenial as denial:
            await commit_and_raise(db_session, denial)


class ClinicAdminController(Controller):
    path = "/api/v1/clinic"
    tags = ["clinic administration"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @get("/", opt=access(Role.CLINIC_ADMIN, scope=Scope.CLINIC), summary="The caller's clinic")
    async def get_clinic(
        self, principal: NamedDependency[Principal], db_session: NamedDependency[AsyncSession]
    ) -> Response[ClinicView]:
        from backend.identity import repositories

        assert principal.clinic_id is not None
        clinic = await repositories.get_clinic(db_session, principal.clinic_id)
        if clinic is None:
            raise NotFound("no such clinic")
        current = staff.clinic_view(clinic)
        # The settings have no GET of their own: this is the representation PUT /settings answers.
        return Response(current, headers=etag_headers(current))

    @put(
        "/settings",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.CLINIC),
        description=IF_MATCH_DESCRIPTION,
    )
    async def update_settings(
        self,
        data: JSONBody[ClinicSettings],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[ClinicView]:
        saved = await staff.update_clinic_settings(
            db_session,
            runtime,
            principal,
            totp_required_for_all_staff=data.totp_required_for_all_staff,
            time_zone=data.time_zone,
            if_match=if_match_versions(if_match),
        )
        return Response(saved, headers=etag_headers(saved))

    @post("/staff", opt=access(Role.CLINIC_ADMIN, scope=Scope.CLINIC), status_code=201)
    async def create_staff(
        self,
        data: JSONBody[NewStaffMember],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> CreatedStaffMember:
        created = await staff.create_staff(
            db_session,
            runtime,
            clinic_id=principal.clinic_id,
            role=Role(data.role),
            email=data.email,
            name=data.name,
            created_by=principal,
        )
        return CreatedStaffMember(
            id=created.staff.id,
            role=Role(created.staff.role),
            one_time_password=created.one_time_password,
        )

    @get(
        "/staff",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.CLINIC),
        summary="The clinic's staff accounts (names and emails decrypted; the read is audited)",
    )
    async def list_staff(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        cursor: Annotated[str | None, Parameter(max_length=64)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> StaffPage:
        return await staff_admin.list_staff(
            db_session, runtime, principal, cursor=cursor, limit=limit
        )

    @post("/care-teams", opt=access(Role.CLINIC_ADMIN, scope=Scope.CLINIC), status_code=201)
    async def create_care_team(
        self,
        data: JSONBody[NewCareTeam],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> CareTeamView:
        return await staff.create_care_team(db_session, runtime, principal, data.name)

    @get("/care-teams", opt=access(*CLINICAL, scope=Scope.CLINIC))
    async def list_care_teams(
        self, principal: NamedDependency[Principal], db_session: NamedDependency[AsyncSession]
    ) -> list[CareTeamView]:
        return await staff.list_care_teams(db_session, principal)

    @post(
        "/care-teams/{care_team_id:uuid}/members",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.CLINIC),
        status_code=200,
    )
    async def add_care_team_member(
        self,
        care_team_id: FromPath[UUID],
        data: JSONBody[NewCareTeamMember],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> CareTeamView:
        return await staff.add_care_team_member(
            db_session, runtime, principal, care_team_id, data.staff_id
        )


PageLimit = Annotated[int, Parameter(ge=1, le=200)]


class PatientController(Controller):
    path = "/api/v1/patients"
    tags = ["patients"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @post("/", opt=access(*CLINICAL, scope=Scope.CLINIC), status_code=201)
    async def create_patient(
        self,
        data: JSONBody[NewPatient],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> CreatedPatient:
        return await patients.create_patient(db_session, runtime, principal, data)

    @get("/", opt=access(*CLINICAL, scope=Scope.CLINIC), summary="The clinic's patients (no PHI)")
    async def list_patients(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        cursor: Annotated[str | None, Parameter(max_length=64)] = None,
        limit: PageLimit = 50,
    ) -> PatientPage:
        return await patients.list_patients(
            db_session, runtime, principal, cursor=cursor, limit=limit
        )

    @post(
        "/lookup",
        opt=access(*CLINICAL, scope=Scope.CLINIC),
        status_code=200,
        summary="Find a patient of the clinic by MRN, email or phone (in the body, not the URL)",
    )
    async def find_patient(
        self,
        data: JSONBody[PatientLookup],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> PatientView:
        return await patients.find_patient(db_session, runtime, principal, data)

    @get("/{patient_id:uuid}", opt=access(*CLINICAL, scope=Scope.PATIENT))
    async def get_patient(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> PatientView:
        return await patients.read_patient(db_session, runtime, principal, patient_id)

    @get(
        "/{patient_id:uuid}/consent",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="The patient's monitoring and research consent (its ETag is the PUT's If-Match)",
    )
    async def get_consent(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[ConsentView]:
        current = await consent.read_consent(db_session, runtime, principal, patient_id)
        return Response(current, headers=etag_headers(current))

    @put(
        "/{patient_id:uuid}/consent",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        summary="Record the patient's consents; withdrawing monitoring stops it at once",
        description=CONSENT_IF_MATCH_DESCRIPTION,
    )
    async def change_consent(
        self,
        patient_id: FromPath[UUID],
        data: JSONBody[ConsentChange],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[ConsentSaved]:
        versions = required_if_match_versions(if_match)
        saved = await consent.change_consent(
            db_session,
            runtime,
            principal,
            patient_id,
            data,
            if_match=versions,
        )
        return Response(saved, headers=etag_headers(consent.view_of(saved)))

    @post(
        "/{patient_id:uuid}/enrolment-code",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        status_code=201,
        summary="Issue a new enrolment code; earlier unredeemed codes stop working",
    )
    async def reissue_code(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> EnrolmentCodeView:
        return await patients.reissue_enrolment_code(db_session, runtime, principal, patient_id)

    @post(
        "/{patient_id:uuid}/sign-out",
        opt=access(*CLINICAL, scope=Scope.PATIENT),
        status_code=200,
        summary="Sign the patient out on every device (a lost phone); a new code enrols another",
    )
    async def sign_out_patient(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> PatientSignedOut:
        return await patients.sign_out_patient(db_session, runtime, principal, patient_id)

    @delete(
        "/{patient_id:uuid}",
        opt=access(Role.CLINIC_ADMIN, scope=Scope.PATIENT),
        status_code=204,
        summary="Erase a patient: destroy their data keys and identifiers (irreversible)",
    )
    async def erase_patient(
        self,
        patient_id: FromPath[UUID],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> None:
        await patients.erase_patient(db_session, runtime, principal, patient_id)


class PatientAppController(Controller):
    path = "/api/v1"
    tags = ["patient app"]  # noqa: RUF012
    dependencies = PRINCIPAL_DEPENDENCIES

    @post("/enrolment/redeem", opt=PUBLIC, status_code=201, summary="Redeem an enrolment code")
    async def redeem(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CodeRedemption],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Enrolled:
        try:
            return await patients.redeem_code(
                db_session, runtime, data.code, data.device, source=client_address(request)
            )
        except RecordedDenial as denial:
            await commit_and_raise(db_session, denial)

    @get("/me", opt=access(Role.PATIENT, scope=Scope.SELF))
    async def me(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Me:
        return await patients.me(db_session, runtime, principal)

    @get(
        "/me/consent",
        opt=access(Role.PATIENT, scope=Scope.SELF),
        summary="The patient's own consents (its ETag is the PUT's If-Match)",
    )
    async def my_consent(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[ConsentView]:
        current = await consent.read_consent(db_session, runtime, principal, principal.subject_id)
        return Response(current, headers=etag_headers(current))

    @put(
        "/me/consent",
        opt=access(Role.PATIENT, scope=Scope.SELF),
        summary="Withdraw the patient's own monitoring and/or research consent",
        description=OWN_CONSENT_DESCRIPTION,
    )
    async def withdraw_my_consent(
        self,
        data: JSONBody[ConsentChange],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[ConsentSaved]:
        versions = if_match_versions(if_match)
        saved = await consent.withdraw_own_consent(
            db_session,
            runtime,
            principal,
            data,
            if_match=versions,
        )
        return Response(saved, headers=etag_headers(consent.view_of(saved)))

    @put("/me/device", opt=access(Role.PATIENT, scope=Scope.SELF))
    async def update_device(
        self,
        data: JSONBody[DeviceUpdate],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> DeviceView:
        return await patients.update_device(db_session, runtime, principal, data)
