"""All SQL for check-in rows (Core statements: the claim loop and re-plans are hot paths).

Rows hold both layers of a `CheckInPlan` (see `plans.py`), so `existing_for_patient` gives the
planner back exactly what it wrote and an unchanged re-plan writes nothing.
"""

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db.claims import claim_due_rows
from backend.db.models.device import Device
from backend.db.models.patient import Patient
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import CheckIn
from backend.domain.check_ins.plans import CheckInPlan, CheckInStatus, ExistingCheckIn
from backend.domain.check_ins.replanning import ReplanDecision
from backend.lib.ids import uuid7

TABLE = CheckIn.__table__  # type: ignore[attr-defined]
_c = TABLE.c
DEVICES = Device.__table__  # type: ignore[attr-defined]
RESPONSES = QuestionnaireResponse.__table__  # type: ignore[attr-defined]
PATIENTS = Patient.__table__  # type: ignore[attr-defined]
MONITORING_STOPPED = ("withdrawn", "erased")
"""Patient statuses that end monitoring: nothing more is asked of them (answers are refused)."""

SENDABLE = ("pending", "claimed")
"""Statuses the claim loop may hand over (claimed only once its lease expired)."""
OPEN = ("pending", "claimed", "sent")
"""Not answered and not closed: missed when the window closes."""


def _plan_values(plan: CheckInPlan) -> dict[str, Any]:
    """The plan's columns; the delivery columns are the repository's own."""
    return {
        "idempotency_key": plan.key,
        "patient_id": uuid.UUID(plan.patient_id),
        "course_id": uuid.UUID(plan.course_id),
        "session_id": uuid.UUID(plan.session_id),
        "protocol_id": plan.protocol_id,
        "protocol_version": plan.protocol_version,
        "step": plan.step,
        "label": plan.label,
        "status": plan.status,
        "planned_priority": plan.planned_priority,
        "planned_instruments": list(plan.planned_instruments),
        "planned_opens_at": plan.planned_opens_at,
        "planned_closes_at": plan.planned_closes_at,
        "nominal_due_at": plan.nominal_due_at,
        "reminder_delays_seconds": [int(d.total_seconds()) for d in plan.reminder_delays],
        "missed_flag_after_seconds": int(plan.missed_flag_after.total_seconds()),
        "priority": plan.priority,
        "instruments": list(plan.instruments),
        "opens_at": plan.opens_at,
        "closes_at": plan.closes_at,
        "due_at": plan.due_at,
        "during_quiet_hours": plan.during_quiet_hours,
        "reminders_at": [r.isoformat() for r in plan.reminders_at],
        "missed_flag_at": plan.missed_flag_at,
        "merged_into": plan.merged_into,
        "absorbed": list(plan.absorbed),
        "next_reminder_at": plan.reminders_at[0] if plan.reminders_at else None,
        "reminders_sent": 0,
        "cancelled_at": None,
    }


def plan_of(row: Any) -> CheckInPlan:
    """The `CheckInPlan` a row stores (the inverse of `_plan_values`)."""
    return CheckInPlan(
        key=row.idempotency_key,
        patient_id=str(row.patient_id),
        course_id=str(row.course_id),
        session_id=str(row.session_id),
        protocol_id=row.protocol_id,
        protocol_version=row.protocol_version,
        step=row.step,
        label=row.label,
        planned_priority=row.planned_priority,
        planned_instruments=tuple(row.planned_instruments),
        planned_opens_at=row.planned_opens_at,
        planned_closes_at=row.planned_closes_at,
        nominal_due_at=row.nominal_due_at,
        reminder_delays=tuple(timedelta(seconds=s) for s in row.reminder_delays_seconds),
        missed_flag_after=timedelta(seconds=row.missed_flag_after_seconds),
        priority=row.priority,
        instruments=tuple(row.instruments),
        opens_at=row.opens_at,
        closes_at=row.closes_at,
        due_at=row.due_at,
        during_quiet_hours=bool(row.during_quiet_hours),
        reminders_at=tuple(datetime.fromisoformat(r) for r in row.reminders_at),
        missed_flag_at=row.missed_flag_at,
        merged_into=row.merged_into,
        absorbed=tuple(row.absorbed),
    )


async def rows_for_patient(connection: AsyncConnection, patient_id: uuid.UUID) -> list[Row[Any]]:
    statement = (
        select(TABLE).where(_c.patient_id == patient_id).order_by(_c.due_at, _c.idempotency_key)
    )
    return list((await connection.execute(statement)).all())


async def existing_for_patient(
    connection: AsyncConnection, patient_id: uuid.UUID
) -> list[ExistingCheckIn]:
    """Every check-in of the patient, of every session and status, as the planner reads them."""
    rows = await rows_for_patient(connection, patient_id)
    return [ExistingCheckIn(plan=plan_of(r), status=r.status) for r in rows]


async def apply(
    connection: AsyncConnection, decision: ReplanDecision, *, clinic_id: uuid.UUID, now: datetime
) -> None:
    """Write a re-plan decision in the caller's transaction. Updates and cancellations are
    guarded by status, so a row claimed meanwhile by a timer is left as the timer made it."""
    if decision.insert:
        await connection.execute(
            TABLE.insert(),
            [
                {
                    **_plan_values(plan),
                    "id": uuid7(),
                    "clinic_id": clinic_id,
                    "attempts": 0,
                    "devices_notified": 0,
                    "answered_instruments": [],
                    "created_at": now,
                    "updated_at": now,
                }
                for plan in decision.insert
            ],
        )
    for plan in decision.update:
        await connection.execute(
            update(TABLE)
            .where(
                _c.idempotency_key == plan.key, _c.status.in_(("pending", "merged", "cancelled"))
            )
            .values(**_plan_values(plan), updated_at=now)
        )
    if decision.cancel:
        await connection.execute(
            update(TABLE)
            .where(
                _c.idempotency_key.in_(decision.cancel),
                _c.status.in_(("pending", "merged")),
            )
            .values(status="cancelled", cancelled_at=now, next_reminder_at=None, updated_at=now)
        )


# --- the timers --------------------------------------------------------------------------------


async def mark_missed(connection: AsyncConnection, *, now: datetime, limit: int) -> list[Row[Any]]:
    """Close check-ins whose window has closed unanswered: missed, never sent late.

    A check-in answered in part (one of two questionnaires) counts as answered: the patient
    responded, and what they answered is on record. Returns the rows it closed.
    """
    closed = and_(
        _c.status.in_(OPEN),
        _c.closes_at <= now,
        or_(_c.status != "claimed", _c.lease_until < now),
    )
    # Select then update (see `_claim`): one UPDATE ... IN (SELECT ... LIMIT n) can close more
    # than ``limit`` rows on PostgreSQL.
    candidates = (
        select(_c.id)
        .where(closed)
        .order_by(_c.closes_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list((await connection.execute(candidates)).scalars().all())
    if not ids:
        return []
    result = await connection.execute(
        update(TABLE)
        .where(_c.id.in_(ids), closed)
        .values(
            status="missed",
            missed_at=now,
            next_reminder_at=None,
            lease_until=None,
            updated_at=now,
        )
        .returning(_c.id, _c.patient_id, _c.clinic_id, _c.answered_instruments)
    )
    rows = list(result.all())
    partly = [r.id for r in rows if r.answered_instruments]
    if partly:
        await connection.execute(
            update(TABLE)
            .where(_c.id.in_(partly))
            .values(status="answered", answered_at=now, missed_at=None)
        )
    return [r for r in rows if not r.answered_instruments]


async def claim_due(
    connection: AsyncConnection,
    *,
    instance: str,
    now: datetime,
    lease: timedelta,
    limit: int,
) -> list[Row[Any]]:
    """Claim up to ``limit`` due check-ins whose window is still open (`backend.db.claims`).
    Expired leases are reclaimable.

    Two statements rather than one with an OR: each then walks an index range
    (``status, due_at``) in due order, where the OR made SQLite scan every open window
    (measured in bench/bench_check_ins.py at 100,000 scheduled check-ins)."""
    stale = await _claim(
        connection,
        and_(
            _c.status == "claimed",
            _c.lease_until < now,
            _c.due_at <= now,
            _c.closes_at > now,
        ),
        instance=instance,
        now=now,
        lease=lease,
        limit=limit,
    )
    if len(stale) >= limit:
        return stale
    fresh = await _claim(
        connection,
        and_(_c.status == "pending", _c.due_at <= now, _c.closes_at > now),
        instance=instance,
        now=now,
        lease=lease,
        limit=limit - len(stale),
    )
    return stale + fresh


async def _claim(
    connection: AsyncConnection,
    due: Any,
    *,
    instance: str,
    now: datetime,
    lease: timedelta,
    limit: int,
) -> list[Row[Any]]:
    return await claim_due_rows(
        connection,
        TABLE,
        _c.id,
        due,
        order_by=_c.due_at,
        limit=limit,
        values={
            "status": "claimed",
            "claimed_by": instance,
            "lease_until": now + lease,
            "attempts": _c.attempts + 1,
        },
        returning=(
            _c.id,
            _c.patient_id,
            _c.clinic_id,
            _c.due_at,
            _c.closes_at,
            _c.priority,
            _c.during_quiet_hours,
            _c.reminders_at,
        ),
    )


async def mark_sent(
    connection: AsyncConnection,
    sent: Sequence[tuple[uuid.UUID, int, datetime | None]],
    *,
    instance: str,
    now: datetime,
) -> int:
    """(check-in id, devices notified, next reminder) triples, guarded by the lease owner;
    returns how many this instance still owned (executemany has no reliable row count, so the
    status change is one statement with RETURNING and the per-row values a second one)."""
    if not sent:
        return 0
    owned = await connection.execute(
        update(TABLE)
        .where(
            _c.id.in_([i for i, _, _ in sent]),
            _c.claimed_by == instance,
            _c.status == "claimed",
        )
        .values(status="sent", sent_at=now, lease_until=None, updated_at=now)
        .returning(_c.id)
    )
    mine = set(owned.scalars().all())
    rows = [{"b_id": i, "b_devices": d, "b_next": at} for i, d, at in sent if i in mine]
    if rows:
        await connection.execute(
            update(TABLE)
            .where(_c.id == bindparam("b_id"))
            .values(devices_notified=bindparam("b_devices"), next_reminder_at=bindparam("b_next")),
            rows,
        )
    return len(mine)


async def claim_reminders(
    connection: AsyncConnection, *, now: datetime, limit: int
) -> list[Row[Any]]:
    """Sent, unanswered check-ins whose next reminder is due and whose window is open, locked."""
    statement: Any = (
        select(
            _c.id,
            _c.patient_id,
            _c.clinic_id,
            _c.closes_at,
            _c.reminders_at,
            _c.reminders_sent,
            _c.next_reminder_at,
            _c.during_quiet_hours,
        )
        .where(_c.status == "sent", _c.next_reminder_at <= now, _c.closes_at > now)
        .order_by(_c.next_reminder_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await connection.execute(statement)).all())


async def advance_reminder(
    connection: AsyncConnection,
    check_in_id: uuid.UUID,
    *,
    sent_number: int,
    next_at: datetime | None,
    now: datetime,
) -> None:
    await connection.execute(
        update(TABLE)
        .where(_c.id == check_in_id)
        .values(reminders_sent=sent_number, next_reminder_at=next_at, updated_at=now)
    )


async def active_devices(
    connection: AsyncConnection, patient_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, str]]]:
    """Patient id → (device id, platform) of devices that can receive a push."""
    ids = sorted(set(patient_ids))
    found: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = {i: [] for i in ids}
    if not ids:
        return found
    d = DEVICES.c
    rows = await connection.execute(
        select(d.id, d.patient_id, d.platform)
        .where(d.patient_id.in_(ids), d.revoked_at.is_(None), d.push_token_ciphertext.is_not(None))
        .order_by(d.id)
    )
    for device_id, patient_id, platform in rows.all():
        found[patient_id].append((device_id, platform))
    return found


async def monitoring_stopped(
    connection: AsyncConnection, patient_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """The patients among these whose monitoring has stopped (withdrawn or erased)."""
    ids = sorted(set(patient_ids))
    if not ids:
        return set()
    p = PATIENTS.c
    rows = await connection.execute(
        select(p.id).where(p.id.in_(ids), p.status.in_(MONITORING_STOPPED))
    )
    return set(rows.scalars().all())


async def cancel_issued(
    connection: AsyncConnection, check_in_ids: Sequence[uuid.UUID], *, now: datetime
) -> None:
    """Cancel claimed or sent check-ins (monitoring stopped): never pushed, reminded or missed."""
    if not check_in_ids:
        return
    await connection.execute(
        update(TABLE)
        .where(_c.id.in_(list(check_in_ids)), _c.status.in_(("claimed", "sent")))
        .values(
            status="cancelled",
            cancelled_at=now,
            next_reminder_at=None,
            lease_until=None,
            updated_at=now,
        )
    )


async def cancel_unsent_for_patient(
    connection: AsyncConnection, patient_id: uuid.UUID, *, now: datetime
) -> int:
    """Cancel every check-in of the patient that has not reached them (pending, merged): their
    monitoring stopped. Claimed rows are the timers' (which cancel them on seeing the status).

    Rows a timer pass holds right now are skipped, not waited for: waiting on a row the pass
    then updates again deadlocked erasure against the pass on PostgreSQL. A skipped row is
    that pass's, and every later pass cancels it on claiming it (`monitoring_stopped`)."""
    unsent = and_(_c.patient_id == patient_id, _c.status.in_(("pending", "merged")))
    ids = list(
        (
            await connection.execute(
                select(_c.id).where(unsent).order_by(_c.id).with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if not ids:
        return 0
    result = await connection.execute(
        update(TABLE)
        .where(_c.id.in_(ids), unsent)
        .values(status="cancelled", cancelled_at=now, next_reminder_at=None, updated_at=now)
    )
    return int(result.rowcount or 0)


async def cancel_open_for_patient(
    connection: AsyncConnection, patient_id: uuid.UUID, *, now: datetime
) -> list[uuid.UUID]:
    """Cancel every check-in of the patient still open to them: not yet sent (pending, merged)
    and sent but unanswered while its window is open. Their monitoring consent was withdrawn:
    nothing more is sent, reminded or counted as missed. Returns the ids it cancelled.

    SKIP LOCKED, as `cancel_unsent_for_patient` and for the same reason: a row a timer pass holds
    (claimed, being reminded) is that pass's, and it cancels it itself on seeing the patient's
    status (`monitoring_stopped`)."""
    still_open = and_(
        _c.patient_id == patient_id,
        or_(
            _c.status.in_(("pending", "merged")),
            and_(_c.status == "sent", _c.closes_at > now),
        ),
    )
    ids = list(
        (
            await connection.execute(
                select(_c.id).where(still_open).order_by(_c.id).with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if not ids:
        return []
    result = await connection.execute(
        update(TABLE)
        .where(_c.id.in_(ids), still_open)
        .values(
            status="cancelled",
            cancelled_at=now,
            next_reminder_at=None,
            lease_until=None,
            updated_at=now,
        )
        .returning(_c.id)
    )
    return list(result.scalars().all())


async def last_answered(connection: AsyncConnection, patient_id: uuid.UUID) -> dict[str, datetime]:
    """Instrument id → when the patient last answered it (the planner's substitutions)."""
    r = RESPONSES.c
    rows = await connection.execute(
        select(r.instrument_id, func.max(r.authored_at))
        .where(r.patient_id == patient_id)
        .group_by(r.instrument_id)
    )
    return {str(i): _aware(at) for i, at in rows.all() if at is not None}


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def status_counts(connection: AsyncConnection) -> dict[CheckInStatus, int]:
    rows = await connection.execute(select(_c.status, func.count()).group_by(_c.status))
    return {status: int(count) for status, count in rows.all()}


def next_reminder(reminders_at: Iterable[str], now: datetime) -> datetime | None:
    """The first stored reminder time after `now` (overdue ones are skipped, not bunched)."""
    return min((at for at in map(datetime.fromisoformat, reminders_at) if at > now), default=None)
