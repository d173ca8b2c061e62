"""All SQL for notification receipts (Core: the app reports one per push, and the fallback timer
and the ladder read them in bulk)."""

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, cast

import msgspec
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.models.notification import NotificationReceipt
from backend.db.upsert import dialect_insert

TABLE: Final = cast(Table, NotificationReceipt.__table__)  # type: ignore[attr-defined]
_c = TABLE.c
EVENTS: Final = ("received", "opened")


class FirstReceipts(msgspec.Struct, frozen=True, kw_only=True):
    """The earliest report of each event (over every message of one check-in, or one message)."""

    received_at: datetime | None = None
    opened_at: datetime | None = None


NO_RECEIPTS: Final = FirstReceipts()


async def record(
    connection: AsyncConnection,
    *,
    message_id: uuid.UUID,
    events: Iterable[str],
    patient_id: uuid.UUID,
    check_in_id: str | None,
    now: datetime,
) -> None:
    """Insert each event unless already reported (the first report's time is kept)."""
    insert = dialect_insert(connection)
    for event in events:
        await connection.execute(
            insert(TABLE)
            .values(
                message_id=message_id,
                event=event,
                patient_id=patient_id,
                check_in_id=check_in_id,
                recorded_at=now,
            )
            .on_conflict_do_nothing(index_elements=["message_id", "event"])
        )


async def of_message(connection: AsyncConnection, message_id: uuid.UUID) -> FirstReceipts:
    rows = await connection.execute(
        select(_c.event, _c.recorded_at).where(_c.message_id == message_id)
    )
    found = {str(event): at for event, at in rows.all()}
    return FirstReceipts(received_at=found.get("received"), opened_at=found.get("opened"))


async def of_check_ins(
    connection: AsyncConnection, check_in_ids: Iterable[uuid.UUID | str]
) -> dict[str, FirstReceipts]:
    """First receipts per check-in id (as a string, as the outbox stores it); absent = none."""
    ids = sorted({str(i) for i in check_in_ids})
    if not ids:
        return {}
    rows = await connection.execute(
        select(_c.check_in_id, _c.event, func.min(_c.recorded_at))
        .where(_c.check_in_id.in_(ids))
        .group_by(_c.check_in_id, _c.event)
    )
    found: dict[str, dict[str, Any]] = {}
    for check_in_id, event, at in rows.all():
        found.setdefault(str(check_in_id), {})[f"{event}_at"] = at
    return {key: FirstReceipts(**value) for key, value in found.items()}
