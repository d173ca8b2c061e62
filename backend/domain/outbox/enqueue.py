"""Put a notification in the outbox inside the caller's transaction (never sends anything)."""

import uuid
from datetime import datetime

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.fallback import repository as fallback
from backend.domain.fallback.plan import step_times
from backend.domain.outbox import repository
from backend.lib.ids import uuid7
from notifications.base import Channel, Urgency
from notifications.templates import MessageKind

# Set in a session's ``info`` when it enqueued something, so the request boundary can wake this
# instance's dispatcher right after the commit (other instances hear PostgreSQL's NOTIFY).
WAKE_FLAG = "interlude_outbox_wake"


class RecipientType:
    DEVICE = "device"  # a patient's registered device (push token decrypted at send time)
    STAFF = "staff"  # a staff member (e-mail decrypted at send time)
    PATIENT_PHONE = "patient_phone"  # SMS to a patient who opted in
    WEBHOOK = "webhook"  # a configured endpoint name
    CONSOLE = "console"  # development channel


class OutboxRequest(msgspec.Struct, frozen=True, kw_only=True):
    idempotency_key: str
    channel: Channel
    kind: MessageKind
    recipient_type: str
    recipient_id: str
    clinic_id: uuid.UUID | None = None
    check_in_id: str | None = None
    alert_id: str | None = None
    task_id: str | None = None
    collapse_key: str | None = None
    urgency: Urgency = Urgency.NORMAL
    ttl_seconds: int = 24 * 3600
    not_before: datetime | None = None
    expires_at: datetime | None = None
    max_attempts: int = 8


async def enqueue(session: AsyncSession, request: OutboxRequest, *, now: datetime) -> bool:
    """Add the message unless one with the same idempotency key exists; True if added."""
    connection = await session.connection()
    added = await repository.insert_unless_duplicate(
        connection,
        repository.NewOutboxRow(
            id=uuid7(),
            idempotency_key=request.idempotency_key,
            clinic_id=request.clinic_id,
            channel=request.channel.value,
            kind=request.kind.value,
            recipient_type=request.recipient_type,
            recipient_id=request.recipient_id,
            check_in_id=request.check_in_id,
            alert_id=request.alert_id,
            task_id=request.task_id,
            collapse_key=request.collapse_key,
            urgency=request.urgency.value,
            ttl_seconds=request.ttl_seconds,
            max_attempts=request.max_attempts,
            next_attempt_at=request.not_before or now,
            expires_at=request.expires_at,
            created_at=now,
        ),
    )
    if added:
        session.info[WAKE_FLAG] = True
        if (
            request.kind is MessageKind.CHECK_IN_DUE
            and request.check_in_id is not None
            and request.expires_at is not None
        ):
            await _watch_for_receipt(connection, request.check_in_id, request, now)
    return added


async def _watch_for_receipt(
    connection: AsyncConnection, check_in: str, request: OutboxRequest, now: datetime
) -> None:
    """A check-in's first push starts its fallback watch in the same transaction, so no
    unconfirmed check-in escapes it (`backend.domain.fallback`)."""
    if request.expires_at is None:
        return
    try:
        check_in_id = uuid.UUID(check_in)
    except ValueError:
        return
    await fallback.watch(
        connection,
        check_in_id=check_in_id,
        clinic_id=request.clinic_id,
        first_sent_at=now,
        closes_at=request.expires_at,
        next_at=step_times(now, request.expires_at)[0],
    )
