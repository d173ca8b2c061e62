"""The dispatcher's `MessageGate`: each claimed message's route from its recipient's preferences,
read in at most three queries per batch (devices' owners, patients, staff)."""

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.domain.outbox.enqueue import RecipientType
from backend.domain.outbox.gate import Drop, Route
from backend.domain.preferences import repository
from backend.domain.preferences.rules import (
    PatientChannel,
    StaffPreferences,
    patient_route,
    staff_route,
)
from notifications.base import Urgency

_PATIENT_CHANNEL: dict[str, PatientChannel] = {
    RecipientType.DEVICE: "push",
    RecipientType.PATIENT_PHONE: "sms",
}


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class PreferenceGate:
    async def routes(
        self, connection: AsyncConnection, rows: Sequence[Row[Any]], now: datetime
    ) -> Mapping[uuid.UUID, Route]:
        device_ids = [
            d
            for r in rows
            if r.recipient_type == RecipientType.DEVICE and (d := _uuid(r.recipient_id)) is not None
        ]
        owners = await repository.device_owners(connection, device_ids)
        patient_of: dict[uuid.UUID, uuid.UUID] = {}
        staff_of: dict[uuid.UUID, uuid.UUID] = {}
        for row in rows:
            reference = _uuid(row.recipient_id)
            if reference is None:
                continue
            if row.recipient_type == RecipientType.DEVICE and reference in owners:
                patient_of[row.id] = owners[reference]
            elif row.recipient_type == RecipientType.PATIENT_PHONE:
                patient_of[row.id] = reference
            elif row.recipient_type == RecipientType.STAFF:
                staff_of[row.id] = reference
        patients = await repository.patients(connection, patient_of.values())
        staff = await repository.staff(connection, staff_of.values())
        routes: dict[uuid.UUID, Route] = {}
        for row in rows:
            urgency = Urgency(row.urgency)
            if row.id in patient_of:
                preferences = patients.get(patient_of[row.id])
                if preferences is None:
                    routes[row.id] = Drop(reason="recipient_gone")
                    continue
                routes[row.id] = patient_route(
                    _PATIENT_CHANNEL[row.recipient_type],
                    preferences,
                    now=now,
                    expires_at=row.expires_at,
                    urgency=urgency,
                )
            elif row.id in staff_of:
                routes[row.id] = staff_route(
                    staff.get(staff_of[row.id], StaffPreferences()), now=now, urgency=urgency
                )
        return routes
