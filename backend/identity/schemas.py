"""HTTP bodies of the identity area (msgspec Structs; DESIGN §3)."""

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from backend.identity.roles import Role

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
TotpCode = Annotated[str, msgspec.Meta(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TimeZone = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# BCP 47 language tag, e.g. "en", "en-GB", "pt-BR" (RFC 5646 §2.1, the common subset).
Locale = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35)]
Platform = Literal["ios", "android", "web"]


class Input(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


# --- sessions ---


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    refresh_token_expires_at: datetime
    token_type: str = "Bearer"  # noqa: S105  (the OAuth 2.0 token type, not a secret)


class StaffLogin(Input, frozen=True, kw_only=True):
    email: Email
    password: Password
    totp_code: TotpCode | None = None


class StaffLoginResult(msgspec.Struct, frozen=True, kw_only=True):
    """``authenticated`` carries tokens; ``totp_enrolment_required`` carries an access token
    that reaches only the TOTP enrolment routes (the account must add a second factor first)."""

    status: Literal["authenticated", "totp_enrolment_required"]
    tokens: TokenPair | None = None
    enrolment_access_token: str | None = None


class RefreshRequest(Input, frozen=True, kw_only=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class TotpEnrolment(msgspec.Struct, frozen=True, kw_only=True):
    secret: str
    provisioning_uri: str


class TotpConfirmation(Input, frozen=True, kw_only=True):
    code: TotpCode


class PasswordChange(Input, frozen=True, kw_only=True):
    current_password: Password
    new_password: Password


# --- clinics, staff, care teams ---


class NewStaffMember(Input, frozen=True, kw_only=True):
    role: Literal["clinician", "clinic_admin", "researcher"]
    email: Email
    name: Name


class CreatedStaffMember(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    role: Role
    one_time_password: str


StaffStatus = Literal["active", "disabled"]
ClinicStaffRole = Literal["clinician", "clinic_admin", "researcher"]


class StaffMemberView(msgspec.Struct, frozen=True, kw_only=True):
    """A staff account as its clinic admin sees it: name and email decrypted (the read is
    audited), whether it can sign in, its care teams and its place on the on-call list."""

    id: UUID
    role: Role
    status: StaffStatus
    name: str | None
    email: str | None
    totp_enrolled: bool
    care_team_ids: list[UUID]
    on_call: bool
    created_at: datetime
    last_login_at: datetime | None
    """The last completed sign-in (None: never signed in)."""


class StaffPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[StaffMemberView]
    next_cursor: str | None


class StaffRoleChange(Input, frozen=True, kw_only=True):
    role: ClinicStaffRole


class NewCareTeam(Input, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]


class CareTeamView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    member_ids: list[UUID] = msgspec.field(default_factory=list)


class NewCareTeamMember(Input, frozen=True, kw_only=True):
    staff_id: UUID


class ClinicSettings(Input, frozen=True, kw_only=True):
    totp_required_for_all_staff: bool
    time_zone: str | None = None
    """IANA name of the clinic's zone (the dashboard's times and "today"); omitted: unchanged."""


class ClinicView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    totp_required_for_all_staff: bool
    time_zone: str


# --- patients ---


class NewPatient(Input, frozen=True, kw_only=True):
    name: Name
    time_zone: TimeZone
    locale: Locale = "en"
    email: Email | None = None
    phone: Annotated[str, msgspec.Meta(min_length=3, max_length=32)] | None = None
    date_of_birth: date | None = None
    mrn: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    care_team_id: UUID | None = None
    monitoring_consent: bool = True
    research_consent: bool = False


class PatientView(msgspec.Struct, frozen=True, kw_only=True):
    """A patient as their clinic sees them, identifying fields decrypted (the read is audited)."""

    id: UUID
    clinic_id: UUID
    care_team_id: UUID | None
    status: str
    name: str | None
    email: str | None
    phone: str | None
    date_of_birth: date | None
    mrn: str | None
    time_zone: str
    locale: str
    monitoring_consent: bool
    research_consent: bool
    created_at: datetime


class PatientSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the clinic's patient list: no identifying fields."""

    id: UUID
    care_team_id: UUID | None
    status: str
    created_at: datetime


class PatientPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[PatientSummary]
    next_cursor: str | None


class PatientLookup(Input, frozen=True, kw_only=True):
    """Exactly one identifier. Sent in a body, never a URL, so it stays out of logs."""

    mrn: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    email: Email | None = None
    phone: Annotated[str, msgspec.Meta(min_length=3, max_length=32)] | None = None


class EnrolmentCodeView(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    expires_at: datetime


class PatientSignedOut(msgspec.Struct, frozen=True, kw_only=True):
    devices_signed_out: int
    """Enrolled devices that no longer reach the patient's data or receive pushes."""


class CreatedPatient(msgspec.Struct, frozen=True, kw_only=True):
    patient: PatientView
    enrolment: EnrolmentCodeView


class ConsentChange(Input, frozen=True, kw_only=True):
    """Both consents as they should be from now on (a PUT replaces the pair)."""

    monitoring_consent: bool
    research_consent: bool


class ConsentView(msgspec.Struct, frozen=True, kw_only=True):
    """A patient's consents and the monitoring status they imply (its ETag is the PUT's
    If-Match). ``status``: ``withdrawn`` once monitoring consent is withdrawn; ``active`` or
    ``invited`` (no device enrolled yet) while it is given."""

    monitoring_consent: bool
    research_consent: bool
    consent_updated_at: datetime
    status: str


class ConsentSaved(msgspec.Struct, frozen=True, kw_only=True):
    """A PUT's answer: the consents now in force (as the GET shows them) and what followed."""

    monitoring_consent: bool
    research_consent: bool
    consent_updated_at: datetime
    status: str
    check_ins_cancelled: int = 0
    """Check-ins still open to the patient that a monitoring withdrawal cancelled."""
    check_ins_planned: int = 0
    """Check-ins planned again (new or restored) when monitoring consent was given again."""


# --- patient app ---


class DeviceRegistration(Input, frozen=True, kw_only=True):
    platform: Platform
    time_zone: TimeZone
    locale: Locale
    push_token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    app_version: Annotated[str, msgspec.Meta(max_length=32)] | None = None


class CodeRedemption(Input, frozen=True, kw_only=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    device: DeviceRegistration


class Enrolled(msgspec.Struct, frozen=True, kw_only=True):
    patient_id: UUID
    device_id: UUID
    tokens: TokenPair


class DeviceUpdate(Input, frozen=True, kw_only=True):
    time_zone: TimeZone | None = None
    locale: Locale | None = None
    push_token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    app_version: Annotated[str, msgspec.Meta(max_length=32)] | None = None


class DeviceView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    platform: str
    time_zone: str
    locale: str
    app_version: str | None
    has_push_token: bool
    last_seen_at: datetime


class Me(msgspec.Struct, frozen=True, kw_only=True):
    """The patient's own record, as the app shows it."""

    id: UUID
    name: str | None
    time_zone: str
    locale: str
    status: str
    monitoring_consent: bool
    research_consent: bool
