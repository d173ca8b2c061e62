"""Recording a receipt: only the patient a message was sent to may report on it.

A message is the patient's when it went to one of their devices (push) or to their phone (SMS).
"Opened" implies "received" (a notification cannot be tapped before it arrives; a phone that
missed the delivery callback still proves delivery by the tap), so both are stored.
"""

import uuid
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.device import Device
from backend.domain.outbox import repository as outbox
from backend.domain.outbox.enqueue import RecipientType
from backend.domain.receipts import repository
from backend.domain.receipts.repository import FirstReceipts
from backend.lib.errors import Forbidden, NotFound

Event = Literal["received", "opened"]
_IMPLIED: Final[dict[str, tuple[str, ...]]] = {
    "received": ("received",),
    "opened": ("received", "opened"),
}


class NotYourNotification(Forbidden):
    problem_type = "not-your-notification"
    title = "This notification was not sent to you"


async def _owner(session: AsyncSession, recipient_type: str, recipient_id: str) -> uuid.UUID | None:
    connection = await session.connection()
    try:
        reference = uuid.UUID(recipient_id)
    except ValueError:
        return None
    if recipient_type == RecipientType.DEVICE:
        device_table = Device.__table__  # type: ignore[attr-defined]
        owner = await connection.scalar(
            select(device_table.c.patient_id).where(device_table.c.id == reference)
        )
        return owner if isinstance(owner, uuid.UUID) else None
    if recipient_type == RecipientType.PATIENT_PHONE:
        return reference
    return None


async def record_receipt(
    session: AsyncSession,
    *,
    patient_id: uuid.UUID,
    message_id: uuid.UUID,
    event: Event,
    now: datetime,
) -> tuple[str | None, FirstReceipts]:
    """(the message's check-in id, its receipts after this report); 404 for an unknown
    message, 403 for another person's."""
    connection = await session.connection()
    row = (
        await connection.execute(
            select(
                outbox.TABLE.c.recipient_type,
                outbox.TABLE.c.recipient_id,
                outbox.TABLE.c.check_in_id,
            ).where(outbox.TABLE.c.id == message_id)
        )
    ).first()
    if row is None:
        raise NotFound("no such notification")
    if await _owner(session, row.recipient_type, row.recipient_id) != patient_id:
        raise NotYourNotification("this notification was not sent to you")
    await repository.record(
        connection,
        message_id=message_id,
        events=_IMPLIED[event],
        patient_id=patient_id,
        check_in_id=row.check_in_id,
        now=now,
    )
    return row.check_in_id, await repository.of_message(connection, message_id)
