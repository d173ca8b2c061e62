"""All SQL for the outbox (Core statements: the claim loop is a hot path)."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Row, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.claims import lockable_ids, take_lease
from backend.db.models.outbox import OutboxMessage
from notifications.base import Urgency

TABLE = OutboxMessage.__table__  # type: ignore[attr-defined]
_c = TABLE.c
NOTIFY_CHANNEL = "interlude_outbox"


class NewOutboxRow(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    idempotency_key: str
    clinic_id: uuid.UUID | None
    channel: str
    kind: str
    recipient_type: str
    recipient_id: str
    check_in_id: str | None
    alert_id: str | None
    task_id: str | None
    collapse_key: str | None
    urgency: str
    ttl_seconds: int
    max_attempts: int
    next_attempt_at: datetime
    expires_at: datetime | None
    created_at: datetime
    status: str = "pending"
    attempts: int = 0


async def insert_unless_duplicate(connection: AsyncConnection, row: NewOutboxRow) -> bool:
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(TABLE)
        .values(msgspec.structs.asdict(row))
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(_c.id)
    )
    inserted = (await connection.execute(statement)).first() is not None
    if inserted and connection.dialect.name == "postgresql":
        # Delivered to LISTENers when this transaction commits, not before (NOTIFY semantics).
        await connection.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
    return inserted


async def claim_due(
    connection: AsyncConnection,
    *,
    instance: str,
    now: datetime,
    lease: timedelta,
    limit: int,
) -> list[Row[Any]]:
    """Claim up to ``limit`` due messages for ``instance`` (`backend.db.claims`: lock the
    candidates, skipping rows another instance holds, then take the lease on exactly those);
    expired leases are reclaimable."""
    due = or_(
        and_(_c.status == "pending", _c.next_attempt_at <= now),
        and_(_c.status == "claimed", _c.lease_until < now),
    )
    # Urgent messages first (an URGENT alert, a high-priority check-in): one behind a fan-out of
    # thousands of routine reminders would otherwise wait for all of them. Two reads, each in
    # its own index order, rather than one ORDER BY urgency that would sort the whole backlog.
    urgent = and_(due, _c.urgency == Urgency.HIGH.value)
    ids = await lockable_ids(connection, _c.id, urgent, order_by=_c.next_attempt_at, limit=limit)
    if len(ids) < limit:
        others = and_(due, _c.id.not_in(ids)) if ids else due
        ids += await lockable_ids(
            connection, _c.id, others, order_by=_c.next_attempt_at, limit=limit - len(ids)
        )
    return await take_lease(
        connection,
        TABLE,
        _c.id,
        ids,
        due,
        values={
            "status": "claimed",
            "claimed_by": instance,
            "lease_until": now + lease,
            "attempts": _c.attempts + 1,
        },
        returning=list(TABLE.c),
    )


def _mine(message_id: uuid.UUID, instance: str) -> Any:
    # Guards every outcome: an instance whose lease was taken over cannot overwrite the new owner.
    return and_(_c.id == message_id, _c.claimed_by == instance, _c.status == "claimed")


async def mark_sent(
    connection: AsyncConnection,
    message_id: uuid.UUID,
    *,
    instance: str,
    now: datetime,
    provider_message_id: str | None,
    http_status: int | None,
) -> bool:
    result = await connection.execute(
        update(TABLE)
        .where(_mine(message_id, instance))
        .values(
            status="sent",
            sent_at=now,
            lease_until=None,
            provider_message_id=provider_message_id,
            last_http_status=http_status,
            last_reason=None,
        )
    )
    return bool(result.rowcount)


async def mark_sent_many(
    connection: AsyncConnection,
    sent: list[tuple[uuid.UUID, str | None, int | None]],
    *,
    instance: str,
    now: datetime,
) -> set[uuid.UUID]:
    """`mark_sent` for a batch in two statements (which rows are still ours, then one
    executemany): a statement per message was most of a fan-out's database time. Returns the
    ids that were still ours."""
    if not sent:
        return set()
    owned = set(
        (
            await connection.execute(
                select(_c.id).where(
                    _c.id.in_([message_id for message_id, _, _ in sent]),
                    _c.claimed_by == instance,
                    _c.status == "claimed",
                )
            )
        )
        .scalars()
        .all()
    )
    if owned:
        await connection.execute(
            update(TABLE)
            .where(
                _c.id == bindparam("message_id"),
                _c.claimed_by == instance,
                _c.status == "claimed",
            )
            .values(
                status="sent",
                sent_at=now,
                lease_until=None,
                provider_message_id=bindparam("provider_id"),
                last_http_status=bindparam("http"),
                last_reason=None,
            ),
            [
                {"message_id": message_id, "provider_id": provider_id, "http": http}
                for message_id, provider_id, http in sent
                if message_id in owned
            ],
        )
    return owned


async def mark_unsent(
    connection: AsyncConnection,
    message_id: uuid.UUID,
    *,
    instance: str,
    status: str,
    reason: str | None,
    http_status: int | None,
    next_attempt_at: datetime | None,
) -> bool:
    values: dict[str, Any] = {
        "status": status,
        "lease_until": None,
        "last_reason": reason,
        "last_http_status": http_status,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    result = await connection.execute(
        update(TABLE).where(_mine(message_id, instance)).values(**values)
    )
    return bool(result.rowcount)


async def hold(
    connection: AsyncConnection,
    message_id: uuid.UUID,
    *,
    instance: str,
    until: datetime,
    reason: str,
) -> bool:
    """Back to pending until ``until`` without spending an attempt (a preference said not now)."""
    result = await connection.execute(
        update(TABLE)
        .where(_mine(message_id, instance))
        .values(
            status="pending",
            lease_until=None,
            next_attempt_at=until,
            attempts=_c.attempts - 1,
            last_reason=reason,
            last_http_status=None,
        )
    )
    return bool(result.rowcount)


async def cancel_expired(connection: AsyncConnection, *, now: datetime) -> int:
    """Messages whose purpose has passed (a closed check-in window) are cancelled, not sent late."""
    result = await connection.execute(
        update(TABLE)
        .where(
            _c.status.in_(("pending", "claimed")),
            _c.expires_at.is_not(None),
            _c.expires_at <= now,
            or_(_c.status == "pending", _c.lease_until < now),
        )
        .values(status="cancelled", lease_until=None, last_reason="expired")
    )
    return int(result.rowcount or 0)


async def status_counts(connection: AsyncConnection) -> dict[str, int]:
    rows = await connection.execute(select(_c.status, func.count()).group_by(_c.status))
    return {str(status): int(count) for status, count in rows.all()}


async def oldest_pending(connection: AsyncConnection, *, now: datetime) -> datetime | None:
    value = await connection.scalar(
        select(func.min(_c.next_attempt_at)).where(
            _c.status == "pending", _c.next_attempt_at <= now
        )
    )
    return value if isinstance(value, datetime) else None
