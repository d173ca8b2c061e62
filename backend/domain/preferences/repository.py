"""All SQL for notification preferences (Core: the dispatcher reads a whole batch at once)."""

import uuid
from collections.abc import Iterable
from datetime import datetime, time
from typing import Any, Final, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.models.device import Device
from backend.db.models.notification import (
    PatientNotificationPreference,
    StaffNotificationPreference,
)
from backend.db.models.patient import Patient
from backend.db.models.treatment import PatientQuietHours
from backend.domain.check_ins.quiet_hours import QuietHours
from backend.domain.preferences.rules import PatientPreferences, StaffPreferences

PATIENT_PREFERENCES: Final = cast(Table, PatientNotificationPreference.__table__)  # type: ignore[attr-defined]
STAFF_PREFERENCES: Final = cast(Table, StaffNotificationPreference.__table__)  # type: ignore[attr-defined]
DEVICES: Final = cast(Table, Device.__table__)  # type: ignore[attr-defined]
PATIENTS: Final = cast(Table, Patient.__table__)  # type: ignore[attr-defined]
QUIET: Final = cast(Table, PatientQuietHours.__table__)  # type: ignore[attr-defined]


def _insert(connection: AsyncConnection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


async def device_owners(
    connection: AsyncConnection, device_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    rows = await connection.execute(
        select(DEVICES.c.id, DEVICES.c.patient_id).where(DEVICES.c.id.in_(ids))
    )
    return {device_id: patient_id for device_id, patient_id in rows.all()}  # noqa: C416


async def patients(
    connection: AsyncConnection, patient_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, PatientPreferences]:
    """Preferences of each existing patient (defaults where nothing was chosen)."""
    ids = sorted(set(patient_ids))
    if not ids:
        return {}
    p, n, q = PATIENTS.c, PATIENT_PREFERENCES.c, QUIET.c
    rows = await connection.execute(
        select(p.id, p.time_zone, n.channels, q.starts, q.ends)
        .select_from(
            PATIENTS.outerjoin(PATIENT_PREFERENCES, n.patient_id == p.id).outerjoin(
                QUIET, q.patient_id == p.id
            )
        )
        .where(p.id.in_(ids))
    )
    found = {}
    for patient_id, time_zone, channels, starts, ends in rows.all():
        quiet = QuietHours()
        if starts is not None and ends is not None:
            quiet = QuietHours(start=time.fromisoformat(starts), end=time.fromisoformat(ends))
        chosen = PatientPreferences().channels if channels is None else tuple(channels)
        found[patient_id] = PatientPreferences(
            channels=chosen,
            quiet_hours=quiet,
            time_zone=time_zone,
        )
    return found


async def staff(
    connection: AsyncConnection, staff_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, StaffPreferences]:
    """Stored preferences; a clinician without a row has the defaults (e-mail, on call)."""
    ids = sorted(set(staff_ids))
    if not ids:
        return {}
    c = STAFF_PREFERENCES.c
    rows = await connection.execute(
        select(c.staff_id, c.channel, c.webhook_endpoint, c.on_call).where(c.staff_id.in_(ids))
    )
    return {
        staff_id: StaffPreferences(
            channel=channel, webhook_endpoint=endpoint, on_call=bool(on_call)
        )
        for staff_id, channel, endpoint, on_call in rows.all()
    }


async def save_patient_channels(
    connection: AsyncConnection,
    patient_id: uuid.UUID,
    channels: list[str],
    *,
    by: uuid.UUID,
    now: datetime,
) -> None:
    values = {"patient_id": patient_id, "channels": channels, "updated_at": now, "updated_by": by}
    statement = _insert(connection)(PATIENT_PREFERENCES).values(values)
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["patient_id"],
            set_={"channels": channels, "updated_at": now, "updated_by": by},
        )
    )


async def save_staff(
    connection: AsyncConnection,
    staff_id: uuid.UUID,
    preferences: StaffPreferences,
    *,
    now: datetime,
) -> None:
    values = {
        "channel": preferences.channel,
        "webhook_endpoint": preferences.webhook_endpoint,
        "on_call": preferences.on_call,
        "updated_at": now,
    }
    statement = _insert(connection)(STAFF_PREFERENCES).values({"staff_id": staff_id, **values})
    await connection.execute(
        statement.on_conflict_do_update(index_elements=["staff_id"], set_=values)
    )
