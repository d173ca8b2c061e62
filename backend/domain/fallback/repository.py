"""All SQL for check-in fallback (Core: the timer is a claim loop like the outbox's)."""

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import Row, Table, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.claims import claim_due_rows
from backend.db.models.notification import CheckInFallback, StaffTask
from backend.db.models.treatment import CheckIn
from backend.db.upsert import dialect_insert

TABLE: Final = cast(Table, CheckInFallback.__table__)  # type: ignore[attr-defined]
TASKS: Final = cast(Table, StaffTask.__table__)  # type: ignore[attr-defined]
CHECK_INS: Final = cast(Table, CheckIn.__table__)  # type: ignore[attr-defined]
_c = TABLE.c


async def watch(
    connection: AsyncConnection,
    *,
    check_in_id: uuid.UUID,
    clinic_id: uuid.UUID | None,
    first_sent_at: datetime,
    closes_at: datetime,
    next_at: datetime,
) -> None:
    """Start watching a check-in's notifications (once: its later messages change nothing)."""
    await connection.execute(
        dialect_insert(connection)(TABLE)
        .values(
            check_in_id=check_in_id,
            clinic_id=clinic_id,
            first_sent_at=first_sent_at,
            closes_at=closes_at,
            step=0,
            status="watching",
            next_at=next_at,
            updated_at=first_sent_at,
        )
        .on_conflict_do_nothing(index_elements=["check_in_id"])
    )


async def claim_due(
    connection: AsyncConnection, *, instance: str, now: datetime, lease: timedelta, limit: int
) -> list[Row[Any]]:
    """Lock due watches others do not hold and take a lease (`backend.db.claims`); a watch
    whose lease expired is claimable again."""
    due = and_(
        _c.status == "watching",
        _c.next_at <= now,
        or_(_c.lease_until.is_(None), _c.lease_until < now),
    )
    return await claim_due_rows(
        connection,
        TABLE,
        _c.check_in_id,
        due,
        order_by=_c.next_at,
        limit=limit,
        values={"claimed_by": instance, "lease_until": now + lease},
        returning=list(TABLE.c),
    )


async def advance(
    connection: AsyncConnection,
    check_in_id: uuid.UUID,
    *,
    instance: str,
    from_step: int,
    to_step: int,
    status: str,
    next_at: datetime | None,
    outcome: str | None,
    now: datetime,
) -> bool:
    """Compare-and-swap on (step, owner): False when another instance got there first."""
    values: dict[str, Any] = {
        "step": to_step,
        "status": status,
        "claimed_by": None,
        "lease_until": None,
        "outcome": outcome,
        "updated_at": now,
    }
    if next_at is not None:
        values["next_at"] = next_at
    result = await connection.execute(
        update(TABLE)
        .where(
            _c.check_in_id == check_in_id,
            _c.step == from_step,
            _c.claimed_by == instance,
            _c.status == "watching",
        )
        .values(**values)
        .returning(_c.check_in_id)
    )
    return result.first() is not None


async def hurry(connection: AsyncConnection, check_in_ids: Iterable[str], *, now: datetime) -> None:
    """Look at these check-ins now (their push could not go: the next channel should)."""
    ids = []
    for value in check_in_ids:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            continue
    if ids:
        await connection.execute(
            update(TABLE)
            .where(_c.check_in_id.in_(ids), _c.status == "watching", _c.next_at > now)
            .values(next_at=now)
        )


async def close_for_patient(
    connection: AsyncConnection, patient_id: uuid.UUID, *, outcome: str, now: datetime
) -> int:
    """Close every open watch of the patient's check-ins (their monitoring stopped): no re-send,
    text or staff task follows. Watches a timer pass holds are skipped, not waited for (lock
    order: see `backend.domain.check_ins.repository.cancel_unsent_for_patient`); that pass, or
    the next, closes them itself (`plan.decide` with ``monitoring_stopped``)."""
    theirs = and_(
        _c.status == "watching",
        _c.check_in_id.in_(select(CHECK_INS.c.id).where(CHECK_INS.c.patient_id == patient_id)),
    )
    ids = list(
        (
            await connection.execute(
                select(_c.check_in_id)
                .where(theirs)
                .order_by(_c.check_in_id)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if not ids:
        return 0
    result = await connection.execute(
        update(TABLE)
        .where(_c.check_in_id.in_(ids), _c.status == "watching")
        .values(status="closed", outcome=outcome, claimed_by=None, lease_until=None, updated_at=now)
        .returning(_c.check_in_id)
    )
    return len(result.all())


async def add_task(
    connection: AsyncConnection,
    *,
    task_id: uuid.UUID,
    clinic_id: uuid.UUID,
    patient_id: uuid.UUID,
    check_in_id: uuid.UUID,
    kind: str,
    now: datetime,
) -> uuid.UUID:
    """The task for this check-in and kind (created once; its id either way)."""
    await connection.execute(
        dialect_insert(connection)(TASKS)
        .values(
            id=task_id,
            clinic_id=clinic_id,
            patient_id=patient_id,
            check_in_id=check_in_id,
            kind=kind,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["kind", "check_in_id"])
    )
    existing = await connection.scalar(
        select(TASKS.c.id).where(TASKS.c.kind == kind, TASKS.c.check_in_id == check_in_id)
    )
    assert isinstance(existing, uuid.UUID)
    return existing
