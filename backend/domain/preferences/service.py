"""Notification preferences as a GET shows them, and their replacement (the unit of work; never
commits).

A patient's preferences can be edited by the patient and by their clinicians, a clinician's by
themself and by their clinic admin: each write replaces the whole object, so it takes the owner's
row lock first and, given ``if_match`` (entity tags of what a GET showed, `backend.lib.
preconditions`), refuses a stale copy with PreconditionFailed (412) instead of saving over
another person's change.
"""

from datetime import datetime
from typing import Final, cast
from uuid import UUID

import msgspec
from sqlalchemy import Table
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.patient import Patient
from backend.db.models.staff import StaffMember
from backend.domain.check_ins.quiet_hours import QuietHours
from backend.domain.preferences import repository
from backend.domain.preferences.rules import PatientChannel, PatientPreferences, StaffPreferences
from backend.domain.sessions import service as sessions
from backend.lib.errors import FieldProblem, InvalidInput
from backend.lib.preconditions import lock_row, require_current

_PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]
_STAFF: Final = cast(Table, StaffMember.__table__)  # type: ignore[attr-defined]


class PatientPreferencesView(msgspec.Struct, frozen=True, kw_only=True):
    channels: list[str]
    sms_opted_in: bool
    has_phone_number: bool
    quiet_hours_start: str
    quiet_hours_end: str
    time_zone: str


class StaffPreferencesView(msgspec.Struct, frozen=True, kw_only=True):
    staff_id: UUID
    channel: str
    webhook_endpoint: str | None
    on_call: bool


async def patient_preferences(session: AsyncSession, patient_id: UUID) -> PatientPreferencesView:
    patient = await sessions.get_patient(session, patient_id)
    connection = await session.connection()
    preferences = (await repository.patients(connection, [patient_id])).get(
        patient_id, PatientPreferences()
    )
    return PatientPreferencesView(
        channels=list(preferences.channels),
        sms_opted_in=preferences.sms_opted_in,
        has_phone_number=patient.phone_ciphertext is not None,
        quiet_hours_start=preferences.quiet_hours.start.strftime("%H:%M"),
        quiet_hours_end=preferences.quiet_hours.end.strftime("%H:%M"),
        time_zone=patient.time_zone,
    )


async def save_patient_preferences(
    session: AsyncSession,
    patient_id: UUID,
    channels: list[PatientChannel],
    quiet_hours: QuietHours | None,
    *,
    by: UUID,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> PatientPreferencesView:
    """Channels in order, and quiet hours when given (unsent check-ins move with them).
    PreconditionFailed if ``if_match`` no longer names the preferences a GET shows."""
    # Before anything of the patient is read: what is compared is what this transaction writes.
    await lock_row(session, _PATIENTS, patient_id)
    patient = await sessions.get_patient(session, patient_id)
    if if_match is not None:
        current = await patient_preferences(session, patient_id)
        require_current(if_match, current, "the patient's notification preferences")
    if "sms" in channels and patient.phone_ciphertext is None:
        raise InvalidInput(
            "text messages need a phone number on the patient's record",
            errors=[
                FieldProblem(
                    pointer="/channels", code="no_phone_number", message="no phone number on record"
                )
            ],
        )
    connection = await session.connection()
    await repository.save_patient_channels(connection, patient_id, list(channels), by=by, now=now)
    if quiet_hours is not None:
        await sessions.change_patient_schedule(
            session, patient_id=patient_id, time_zone=None, quiet_hours=quiet_hours, now=now
        )
    return await patient_preferences(session, patient_id)


async def staff_preferences(session: AsyncSession, staff_id: UUID) -> StaffPreferencesView:
    connection = await session.connection()
    preferences = (await repository.staff(connection, [staff_id])).get(staff_id, StaffPreferences())
    return StaffPreferencesView(
        staff_id=staff_id,
        channel=preferences.channel,
        webhook_endpoint=preferences.webhook_endpoint,
        on_call=preferences.on_call,
    )


async def save_staff_preferences(
    session: AsyncSession,
    staff_id: UUID,
    preferences: StaffPreferences,
    *,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> StaffPreferencesView:
    """Replace a staff member's channel and on-call state. PreconditionFailed if ``if_match`` no
    longer names the preferences a GET shows (they and their admin may edit the same copy)."""
    await lock_row(session, _STAFF, staff_id)
    if if_match is not None:
        current = await staff_preferences(session, staff_id)
        require_current(if_match, current, "the notification preferences")
    connection = await session.connection()
    await repository.save_staff(connection, staff_id, preferences, now=now)
    return await staff_preferences(session, staff_id)
