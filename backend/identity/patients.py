"""Patients: create (with an enrolment code), read, find by identifier, list, erase; enrolment
code redemption and the patient's own devices.

Every function takes the caller's ``Principal`` and scopes by its clinic; the access middleware
has already checked the route's rule, and these queries check the clinic again so that a missed
rule cannot leak another clinic's patient.
"""

import re
from datetime import date, datetime
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models import Device, EnrolmentCode, Patient
from backend.domain.sessions import service as sessions
from backend.identity import enrolment, repositories
from backend.identity.audit_trail import audit
from backend.identity.errors import RecordedDenial
from backend.identity.identifiers import (
    PATIENT_EMAIL,
    PATIENT_MRN,
    PATIENT_PHONE,
    FieldSealer,
    blind_index,
)
from backend.identity.lockout import SOURCE_POLICY
from backend.identity.login import check_not_locked, record_failure, source_key
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.identity.schemas import (
    CreatedPatient,
    DeviceRegistration,
    DeviceUpdate,
    DeviceView,
    Enrolled,
    EnrolmentCodeView,
    Me,
    NewPatient,
    PatientLookup,
    PatientPage,
    PatientSignedOut,
    PatientSummary,
    PatientView,
)
from backend.identity.sessions import start_session
from backend.lib.errors import Conflict, FieldProblem, InvalidInput, NotFound, Unauthorized
from backend.state import Runtime

_TABLE = "patients"
_CODE_REFUSED = "the enrolment code is not valid or has expired; ask your clinic for a new one"
_IANA_NAME = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")


def check_time_zone(value: str, pointer: str) -> str:
    """An IANA zone name that this server's tz database knows (scheduling depends on it)."""
    try:
        if _IANA_NAME.match(value) is None:
            raise ZoneInfoNotFoundError(value)
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "unknown time zone",
            errors=[FieldProblem(pointer=pointer, code="time_zone", message="not an IANA zone")],
        ) from None
    return value


def _clinic(principal: Principal) -> UUID:
    if principal.clinic_id is None:  # the access rule already refused this; belt and braces
        raise NotFound("no such patient")
    return principal.clinic_id


async def _patient_in_clinic(
    session: AsyncSession, principal: Principal, patient_id: UUID
) -> Patient:
    patient = await repositories.get_patient(session, _clinic(principal), patient_id)
    if patient is None or patient.status == "erased":
        raise NotFound("no such patient")
    return patient


async def create_patient(
    session: AsyncSession, runtime: Runtime, principal: Principal, data: NewPatient
) -> CreatedPatient:
    clinic_id = _clinic(principal)
    if not data.monitoring_consent:
        # Enrolment exists for monitoring: a patient who does not consent to it has nothing to
        # be enrolled in (and research data come only from monitoring).
        raise InvalidInput(
            "a patient is enrolled for monitoring; record them once they consent to it",
            errors=[
                FieldProblem(
                    pointer="/monitoring_consent",
                    code="consent_required",
                    message="monitoring consent is required to enrol a patient",
                )
            ],
        )
    check_time_zone(data.time_zone, "/time_zone")
    if data.care_team_id is not None and (
        await repositories.get_care_team(session, clinic_id, data.care_team_id) is None
    ):
        raise NotFound("no such care team")
    indexes = {
        "email_index": blind_index(runtime, PATIENT_EMAIL, data.email) if data.email else None,
        "mrn_index": blind_index(runtime, PATIENT_MRN, data.mrn) if data.mrn else None,
        "phone_index": blind_index(runtime, PATIENT_PHONE, data.phone) if data.phone else None,
    }
    for column, index in indexes.items():
        if index is not None and await repositories.find_patient_by_index(
            session, clinic_id, column, index
        ):
            field = column.removesuffix("_index")
            raise Conflict(f"a patient of this clinic already has this {field}")
    patient_id = uuid4()
    await runtime.keyring.create_key(session, patient_id)
    sealer = await FieldSealer.open(
        runtime, session, patient_id, _TABLE, patient_id, for_writing=True
    )
    now = runtime.clock.now()
    patient = Patient(
        id=patient_id,
        clinic_id=clinic_id,
        care_team_id=data.care_team_id,
        status="invited",
        monitoring_consent=data.monitoring_consent,
        research_consent=data.research_consent,
        consent_updated_at=now,
        time_zone=data.time_zone,
        locale=data.locale,
        name_ciphertext=sealer.seal("name_ciphertext", data.name.strip()),
        email_ciphertext=sealer.seal("email_ciphertext", data.email),
        phone_ciphertext=sealer.seal("phone_ciphertext", data.phone),
        date_of_birth_ciphertext=sealer.seal(
            "date_of_birth_ciphertext",
            data.date_of_birth.isoformat() if data.date_of_birth else None,
        ),
        mrn_ciphertext=sealer.seal("mrn_ciphertext", data.mrn),
        created_by=principal.subject_id,
        created_at=now,
        email_index=indexes["email_index"],
        mrn_index=indexes["mrn_index"],
        phone_index=indexes["phone_index"],
    )
    await repositories.add(session, patient)
    code = await _issue_code(session, runtime, principal, patient)
    await _audit(session, runtime, principal, "patient.create", patient.id, "treatment")
    return CreatedPatient(patient=_view(patient, sealer), enrolment=code)


async def _issue_code(
    session: AsyncSession, runtime: Runtime, principal: Principal, patient: Patient
) -> EnrolmentCodeView:
    now = runtime.clock.now()
    await repositories.revoke_open_codes(session, patient.id, now)
    code = enrolment.new_code()
    expires_at = now + enrolment.CODE_LIFETIME
    await repositories.add(
        session,
        EnrolmentCode(
            id=uuid4(),
            patient_id=patient.id,
            clinic_id=patient.clinic_id,
            code_index=runtime.blind_indexes.compute(enrolment.CODE_PURPOSE, code),
            created_by=principal.subject_id,
            created_at=now,
            expires_at=expires_at,
        ),
    )
    return EnrolmentCodeView(code=enrolment.display_code(code), expires_at=expires_at)


async def reissue_enrolment_code(
    session: AsyncSession, runtime: Runtime, principal: Principal, patient_id: UUID
) -> EnrolmentCodeView:
    """A fresh code; the patient's earlier unredeemed codes stop working."""
    patient = await _patient_in_clinic(session, principal, patient_id)
    code = await _issue_code(session, runtime, principal, patient)
    await _audit(session, runtime, principal, "patient.enrolment_code", patient.id, "treatment")
    return code


async def sign_out_patient(
    session: AsyncSession, runtime: Runtime, principal: Principal, patient_id: UUID
) -> PatientSignedOut:
    """Sign the patient out on every device, for a phone lost or passed on: the patient cannot
    do it from the app ("log out everywhere") without the phone. Every session ends (its access
    tokens refused from the next request) and no device receives pushes any more; the patient's
    data and monitoring are untouched. A new enrolment code enrols the next phone."""
    patient = await _patient_in_clinic(session, principal, patient_id)
    now = runtime.clock.now()
    await repositories.revoke_subject_tokens(session, patient_id=patient.id, now=now)
    devices = await repositories.revoke_devices(session, patient.id, now)
    await _audit(session, runtime, principal, "patient.sign_out", patient.id, "security")
    return PatientSignedOut(devices_signed_out=devices)


def _view(patient: Patient, sealer: FieldSealer) -> PatientView:
    dob = sealer.unseal("date_of_birth_ciphertext", patient.date_of_birth_ciphertext)
    return PatientView(
        id=patient.id,
        clinic_id=patient.clinic_id,
        care_team_id=patient.care_team_id,
        status=patient.status,
        name=sealer.unseal("name_ciphertext", patient.name_ciphertext),
        email=sealer.unseal("email_ciphertext", patient.email_ciphertext),
        phone=sealer.unseal("phone_ciphertext", patient.phone_ciphertext),
        date_of_birth=date.fromisoformat(dob) if dob else None,
        mrn=sealer.unseal("mrn_ciphertext", patient.mrn_ciphertext),
        time_zone=patient.time_zone,
        locale=patient.locale,
        monitoring_consent=patient.monitoring_consent,
        research_consent=patient.research_consent,
        created_at=patient.created_at,
    )


async def _decrypted(session: AsyncSession, runtime: Runtime, patient: Patient) -> PatientView:
    sealer = await FieldSealer.open(
        runtime, session, patient.id, _TABLE, patient.id, for_writing=False
    )
    return _view(patient, sealer)


async def read_patient(
    session: AsyncSession, runtime: Runtime, principal: Principal, patient_id: UUID
) -> PatientView:
    patient = await _patient_in_clinic(session, principal, patient_id)
    view = await _decrypted(session, runtime, patient)
    await _audit(session, runtime, principal, "patient.read", patient.id, "treatment")
    return view


async def find_patient(
    session: AsyncSession, runtime: Runtime, principal: Principal, lookup: PatientLookup
) -> PatientView:
    given = [
        (column, purpose, value)
        for column, purpose, value in (
            ("mrn_index", PATIENT_MRN, lookup.mrn),
            ("email_index", PATIENT_EMAIL, lookup.email),
            ("phone_index", PATIENT_PHONE, lookup.phone),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise InvalidInput("give exactly one of mrn, email and phone")
    column, purpose, value = given[0]
    index = blind_index(runtime, purpose, value)
    patient = (
        await repositories.find_patient_by_index(session, _clinic(principal), column, index)
        if index is not None
        else None
    )
    if patient is None or patient.status == "erased":
        await _audit(session, runtime, principal, "patient.find", None, "treatment")
        raise NotFound("no patient of this clinic has this identifier")
    view = await _decrypted(session, runtime, patient)
    await _audit(session, runtime, principal, "patient.find", patient.id, "treatment")
    return view


async def list_patients(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    *,
    cursor: str | None,
    limit: int,
) -> PatientPage:
    try:
        after = UUID(cursor) if cursor else None
    except ValueError:
        raise InvalidInput("the cursor is not valid") from None
    rows = await repositories.list_patients(
        session, _clinic(principal), after=after, limit=limit + 1
    )
    page = rows[:limit]
    await _audit(session, runtime, principal, "patient.list", None, "treatment")
    return PatientPage(
        items=[
            PatientSummary(
                id=p.id, care_team_id=p.care_team_id, status=p.status, created_at=p.created_at
            )
            for p in page
        ],
        next_cursor=str(page[-1].id) if len(rows) > limit else None,
    )


async def erase_patient(
    session: AsyncSession, runtime: Runtime, principal: Principal, patient_id: UUID
) -> None:
    """Erasure by crypto-shredding (DESIGN §5): destroy the patient's data keys, so every field
    ever encrypted for them is unreadable, in backups too once the KEK rotates; null the blind
    indexes, which would otherwise still confirm a guessed identifier; end every session."""
    patient = await _patient_in_clinic(session, principal, patient_id)
    now = runtime.clock.now()
    await runtime.keyring.shred(session, patient.id)
    patient.email_index = patient.mrn_index = patient.phone_index = None
    patient.name_ciphertext = patient.email_ciphertext = patient.phone_ciphertext = None
    patient.date_of_birth_ciphertext = patient.mrn_ciphertext = None
    patient.status = "erased"
    patient.erased_at = now
    session.add(patient)
    await repositories.revoke_subject_tokens(session, patient_id=patient.id, now=now)
    await repositories.revoke_devices(session, patient.id, now)
    await repositories.revoke_open_codes(session, patient.id, now)
    # At once, not when each falls due: an erased patient is never asked again.
    await sessions.cancel_unsent_check_ins(session, patient.id, now=now)
    await _audit(session, runtime, principal, "patient.erase", patient.id, "operations")


async def redeem_code(
    session: AsyncSession, runtime: Runtime, code: str, device: DeviceRegistration, *, source: str
) -> Enrolled:
    """The app's first call: a valid code becomes a registered device and a patient session."""
    keys = [(source_key(runtime, "enrolment-source", source), SOURCE_POLICY)]
    await check_not_locked(session, runtime, keys, action="enrolment.redeem")
    check_time_zone(device.time_zone, "/device/time_zone")
    now = runtime.clock.now()
    row = None
    if enrolment.is_well_formed(code):
        row = await repositories.get_code_by_index(
            session, runtime.blind_indexes.compute(enrolment.CODE_PURPOSE, code)
        )
    patient = None
    if row is not None:
        found = await repositories.get_patient(session, row.clinic_id, row.patient_id)
        # Checked before the code is used up: a withdrawn patient's code is refused but works
        # once the clinic records their consent again.
        if (
            found is not None
            and found.status not in {"erased", "withdrawn"}
            and await repositories.claim_code(session, row.id, now)
        ):
            patient = found
    if row is None or patient is None:
        await record_failure(session, runtime, keys)
        await audit(
            session,
            runtime,
            action="enrolment.redeem",
            resource_type="enrolment_code",
            resource_id=row.id if row is not None else None,
            clinic_id=row.clinic_id if row is not None else None,
            purpose="security",
            outcome="denied",
            actor_id=row.patient_id if row is not None else None,
            actor_role=Role.PATIENT.value if row is not None else None,
        )
        raise RecordedDenial(Unauthorized(_CODE_REFUSED))
    device_id = uuid4()
    sealer = await FieldSealer.open(
        runtime, session, patient.id, "devices", device_id, for_writing=True
    )
    await repositories.add(
        session,
        Device(
            id=device_id,
            patient_id=patient.id,
            clinic_id=patient.clinic_id,
            platform=device.platform,
            push_token_ciphertext=sealer.seal("push_token_ciphertext", device.push_token),
            time_zone=device.time_zone,
            locale=device.locale,
            app_version=device.app_version,
            registered_at=now,
            last_seen_at=now,
        ),
    )
    await repositories.set_code_device(session, row.id, device_id)
    if patient.status == "invited":
        patient.status = "active"
        session.add(patient)
    tokens = await start_session(
        session,
        runtime,
        role=Role.PATIENT,
        subject_id=patient.id,
        clinic_id=patient.clinic_id,
        device_id=device_id,
    )
    await audit(
        session,
        runtime,
        action="enrolment.redeem",
        resource_type="device",
        resource_id=device_id,
        clinic_id=patient.clinic_id,
        purpose="security",
        actor_id=patient.id,
        actor_role=Role.PATIENT.value,
    )
    return Enrolled(patient_id=patient.id, device_id=device_id, tokens=tokens)


async def update_device(
    session: AsyncSession, runtime: Runtime, principal: Principal, data: DeviceUpdate
) -> DeviceView:
    """The calling device's push token, time zone, locale or app version."""
    if principal.device_id is None:
        raise NotFound("this session has no device")
    device = await repositories.get_device(session, principal.subject_id, principal.device_id)
    if device is None or device.revoked_at is not None:
        raise NotFound("no such device")
    now = runtime.clock.now()
    if data.time_zone is not None:
        time_zone = check_time_zone(data.time_zone, "/time_zone")
        # The patient's row first (locked by the re-plan), then the device's, as erasure takes
        # them: the opposite order could deadlock with an erasure running beside it.
        await _follow_time_zone(session, runtime, principal, time_zone, now)
        device.time_zone = time_zone
    if data.locale is not None:
        device.locale = data.locale
    if data.app_version is not None:
        device.app_version = data.app_version
    if data.push_token is not None:
        sealer = await FieldSealer.open(
            runtime, session, principal.subject_id, "devices", device.id, for_writing=True
        )
        device.push_token_ciphertext = sealer.seal("push_token_ciphertext", data.push_token)
    device.last_seen_at = now
    session.add(device)
    await audit(
        session,
        runtime,
        action="device.update",
        resource_type="device",
        resource_id=device.id,
        clinic_id=device.clinic_id,
        purpose="security",
        actor=principal,
    )
    return DeviceView(
        id=device.id,
        platform=device.platform,
        time_zone=device.time_zone,
        locale=device.locale,
        app_version=device.app_version,
        has_push_token=device.push_token_ciphertext is not None,
        last_seen_at=device.last_seen_at,
    )


async def _follow_time_zone(
    session: AsyncSession, runtime: Runtime, principal: Principal, time_zone: str, now: datetime
) -> None:
    """The app reports where the patient is: a new zone re-plans their unsent check-ins (quiet
    hours are local time) in this transaction, audited as the schedule route audits it."""
    patient = await _patient_in_clinic(session, principal, principal.subject_id)
    if patient.time_zone == time_zone:
        return
    await sessions.change_patient_schedule(
        session, patient_id=patient.id, time_zone=time_zone, quiet_hours=None, now=now
    )
    await _audit(session, runtime, principal, "patient.schedule", patient.id, "treatment")


async def me(session: AsyncSession, runtime: Runtime, principal: Principal) -> Me:
    patient = await _patient_in_clinic(session, principal, principal.subject_id)
    sealer = await FieldSealer.open(
        runtime, session, patient.id, _TABLE, patient.id, for_writing=False
    )
    await _audit(session, runtime, principal, "patient.read_self", patient.id, "treatment")
    return Me(
        id=patient.id,
        name=sealer.unseal("name_ciphertext", patient.name_ciphertext),
        time_zone=patient.time_zone,
        locale=patient.locale,
        status=patient.status,
        monitoring_consent=patient.monitoring_consent,
        research_consent=patient.research_consent,
    )


async def _audit(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    action: str,
    patient_id: UUID | None,
    purpose: str,
) -> None:
    await audit(
        session,
        runtime,
        action=action,
        resource_type="patient",
        resource_id=patient_id,
        clinic_id=principal.clinic_id,
        purpose=purpose,
        actor=principal,
    )
