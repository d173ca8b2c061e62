"""Pushing the alert engine's missed check-in reminder to the patient's devices (clinical-spec
§4.2: "one reminder after 12 h").

The reminder is written to the outbox in the transaction that records its occurrence, so it goes
out exactly when the occurrence commits. It uses the idempotency key of the check-in timers'
first reminder (`check_ins.delivery.reminder_message_key(..., 1, ...)`): whichever of the two
gets there first sends it and the other adds nothing, so the patient gets one reminder, not two.
The message carries ids only (the CHECK_IN_REMINDER template is PHI-free). A check-in that was
answered, or whose window has closed, is not pushed: it can no longer be answered, and a "your
check-in is waiting" would be false. The occurrence is recorded either way.
"""

import uuid
from datetime import datetime
from typing import Final, cast

from sqlalchemy import Table, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.treatment import CheckIn
from backend.domain.alerts.candidate import AlertCandidate
from backend.domain.check_ins.delivery import CHANNEL_BY_PLATFORM, reminder_message_key
from backend.domain.check_ins.repository import active_devices
from backend.domain.outbox.enqueue import OutboxRequest, RecipientType, enqueue
from notifications.base import Channel, Urgency
from notifications.templates import MessageKind

_CHECK_INS: Final = cast(Table, CheckIn.__table__)  # type: ignore[attr-defined]
_OPEN_STATUSES: Final = ("sent",)
"""Issued and not yet answered, missed or cancelled: the patient can still answer it."""


async def push_check_in_reminder(
    session: AsyncSession, candidate: AlertCandidate, *, clinic_id: uuid.UUID, now: datetime
) -> int:
    """Enqueue the reminder for each device of the patient; returns how many messages were added
    (0 for any other candidate, a closed window or a patient without a device)."""
    if candidate.kind != "CHECK_IN_REMINDER":
        return 0
    connection = await session.connection()
    c = _CHECK_INS.c
    added = 0
    for check_in_id in candidate.evidence.check_in_ids:
        row = (
            await connection.execute(
                select(
                    c.id, c.patient_id, c.status, c.answered_at, c.closes_at, c.during_quiet_hours
                ).where(c.id == uuid.UUID(check_in_id), c.clinic_id == clinic_id)
            )
        ).first()
        if (
            row is None
            or row.status not in _OPEN_STATUSES
            or row.answered_at is not None
            or row.closes_at <= now
        ):
            continue
        devices = await active_devices(connection, [row.patient_id])
        for device_id, platform in devices.get(row.patient_id, []):
            added += await enqueue(
                session,
                OutboxRequest(
                    idempotency_key=reminder_message_key(row.id, 1, device_id),
                    channel=CHANNEL_BY_PLATFORM.get(platform, Channel.CONSOLE),
                    kind=MessageKind.CHECK_IN_REMINDER,
                    recipient_type=RecipientType.DEVICE,
                    recipient_id=str(device_id),
                    clinic_id=clinic_id,
                    check_in_id=str(row.id),
                    # Replaces the check-in's earlier notification on the phone.
                    collapse_key=f"check-in:{row.id}",
                    # Inside quiet hours: delivered without waking anyone, as the timers do.
                    urgency=Urgency.LOW if row.during_quiet_hours else Urgency.NORMAL,
                    ttl_seconds=max(1, int((row.closes_at - now).total_seconds())),
                    expires_at=row.closes_at,
                ),
                now=now,
            )
    return added
