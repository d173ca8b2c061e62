"""The fallback timer: every instance runs it; the ``check_in_fallbacks`` rows are the queue.

Each pass is one transaction: claim due watches with a lease (SKIP LOCKED on PostgreSQL), read
what decides them in bulk (check-ins, receipts, devices, preferences), take at most one step per
check-in, and advance its step by compare-and-swap. A crash before the commit leaves nothing;
after it, everything; and the outbox rows a step writes carry per-step idempotency keys. So each
step happens exactly once however many replicas run this and however often they restart.
"""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.patient import Patient
from backend.domain.alerts.routing import STAFF_CHANNEL, first_responders
from backend.domain.check_ins import repository as check_ins
from backend.domain.check_ins.delivery import CHANNEL_BY_PLATFORM
from backend.domain.fallback import repository
from backend.domain.fallback.plan import (
    DEFAULT_TIMINGS,
    Act,
    Action,
    FallbackTimings,
    Finish,
    Reach,
    decide,
)
from backend.domain.outbox.enqueue import WAKE_FLAG, OutboxRequest, RecipientType, enqueue
from backend.domain.preferences import repository as preferences
from backend.domain.preferences.rules import PatientPreferences
from backend.domain.receipts import repository as receipts
from backend.lib.clock import Clock
from backend.lib.ids import uuid7
from notifications.base import Channel, Urgency
from notifications.templates import MessageKind

if TYPE_CHECKING:
    from backend.state import Runtime

logger = logging.getLogger("interlude.fallback")
PATIENTS = Patient.__table__  # type: ignore[attr-defined]
TASK_PATIENT_UNREACHED = "patient_unreached"


class FallbackStats(msgspec.Struct, kw_only=True):
    claimed: int = 0
    resent: int = 0
    texted: int = 0
    tasks: int = 0
    confirmed: int = 0
    closed: int = 0
    lost_race: int = 0


def resend_key(check_in_id: uuid.UUID, device_id: uuid.UUID) -> str:
    return f"check-in:{check_in_id}:resend:{device_id}"


def sms_key(check_in_id: uuid.UUID) -> str:
    return f"check-in:{check_in_id}:sms"


def unreached_key(check_in_id: uuid.UUID, staff_id: uuid.UUID) -> str:
    return f"check-in:{check_in_id}:unreached:{staff_id}"


class FallbackTimer:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        instance: str,
        clock: Clock,
        timings: FallbackTimings = DEFAULT_TIMINGS,
        batch_size: int = 100,
        lease: timedelta = timedelta(seconds=60),
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        self._instance = instance
        self._clock = clock
        self._timings = timings
        self._batch_size = batch_size
        self._lease = lease
        self._on_enqueued = on_enqueued
        self.stats = FallbackStats()

    async def drain(self) -> int:
        total = 0
        while True:
            claimed = await self.run_once()
            total += claimed
            if claimed < self._batch_size:
                return total

    async def run_once(self) -> int:
        now = self._clock.now()
        async with self._sessions() as session:
            async with session.begin():
                connection = await session.connection()
                rows = await repository.claim_due(
                    connection,
                    instance=self._instance,
                    now=now,
                    lease=self._lease,
                    limit=self._batch_size,
                )
                if rows:
                    await self._decide_all(session, rows, now)
            woke = session.info.pop(WAKE_FLAG, False)
        if woke and self._on_enqueued is not None:
            self._on_enqueued()
        self.stats.claimed += len(rows)
        return len(rows)

    async def _decide_all(self, session: AsyncSession, rows: list[Any], now: datetime) -> None:
        connection = await session.connection()
        ids = [row.check_in_id for row in rows]
        c = check_ins.TABLE.c
        check_in_rows = {
            r.id: r
            for r in (
                await connection.execute(
                    select(c.id, c.patient_id, c.clinic_id, c.status, c.priority).where(
                        c.id.in_(ids)
                    )
                )
            ).all()
        }
        patient_ids = {r.patient_id for r in check_in_rows.values()}
        confirmed = await receipts.of_check_ins(connection, ids)
        devices = await check_ins.active_devices(connection, patient_ids)
        wanted = await preferences.patients(connection, patient_ids)
        patient_rows = (
            await connection.execute(
                select(PATIENTS.c.id, PATIENTS.c.care_team_id, PATIENTS.c.status).where(
                    PATIENTS.c.id.in_(sorted(patient_ids))
                )
            )
        ).all()
        teams: dict[uuid.UUID, uuid.UUID | None] = {p: t for p, t, _ in patient_rows}
        stopped = {p for p, _, status in patient_rows if status in check_ins.MONITORING_STOPPED}
        for row in rows:
            check_in = check_in_rows.get(row.check_in_id)
            patient_id = check_in.patient_id if check_in is not None else None
            choice = wanted.get(patient_id, PatientPreferences()) if patient_id else None
            reach = Reach(
                push=bool(
                    choice
                    and patient_id is not None
                    and "push" in choice.channels
                    and devices.get(patient_id)
                ),
                sms=bool(choice and choice.sms_opted_in),
            )
            decision = decide(
                steps_done=int(row.step),
                first_sent=row.first_sent_at,
                closes_at=row.closes_at,
                now=now,
                check_in_status=check_in.status if check_in is not None else None,
                confirmed=str(row.check_in_id) in confirmed,
                reach=reach,
                monitoring_stopped=patient_id in stopped,
                timings=self._timings,
            )
            if isinstance(decision, Finish):
                won = await self._advance(
                    connection, row, int(row.step), decision.status, None, decision.outcome, now
                )
                if won and decision.status == "confirmed":
                    self.stats.confirmed += 1
                elif won:
                    self.stats.closed += 1
                continue
            if not isinstance(decision, Act):  # Wait: skip disallowed steps, sleep until due
                await self._advance(
                    connection, row, decision.step, "watching", decision.until, None, now
                )
                continue
            assert check_in is not None
            last = decision.next_at is None
            won = await self._advance(
                connection,
                row,
                decision.step + 1,
                "finished" if last else "watching",
                decision.next_at,
                decision.action.value if last else None,
                now,
            )
            if not won:
                self.stats.lost_race += 1
                continue
            await self._act(
                session,
                decision.action,
                check_in,
                devices.get(check_in.patient_id, []),
                teams.get(check_in.patient_id),
                row.closes_at,
                now,
            )
            logger.info(
                "check-in fallback",
                extra={
                    "fields": {"check_in": str(row.check_in_id), "action": decision.action.value}
                },
            )

    async def _advance(
        self,
        connection: Any,
        row: Any,
        to_step: int,
        status: str,
        next_at: datetime | None,
        outcome: str | None,
        now: datetime,
    ) -> bool:
        return await repository.advance(
            connection,
            row.check_in_id,
            instance=self._instance,
            from_step=int(row.step),
            to_step=to_step,
            status=status,
            next_at=next_at,
            outcome=outcome,
            now=now,
        )

    async def _act(
        self,
        session: AsyncSession,
        action: Action,
        check_in: Any,
        devices: list[tuple[uuid.UUID, str]],
        care_team_id: uuid.UUID | None,
        closes_at: datetime,
        now: datetime,
    ) -> None:
        ttl = max(1, int((closes_at - now).total_seconds()))
        urgency = Urgency.HIGH if check_in.priority == "high" else Urgency.NORMAL
        common: dict[str, Any] = {
            "clinic_id": check_in.clinic_id,
            "check_in_id": str(check_in.id),
            "collapse_key": f"check-in:{check_in.id}",
            "urgency": urgency,
            "ttl_seconds": ttl,
            "expires_at": closes_at,
        }
        if action is Action.RESEND_PUSH:
            for device_id, platform in devices:
                await enqueue(
                    session,
                    OutboxRequest(
                        idempotency_key=resend_key(check_in.id, device_id),
                        channel=CHANNEL_BY_PLATFORM.get(platform, Channel.CONSOLE),
                        kind=MessageKind.CHECK_IN_DUE,
                        recipient_type=RecipientType.DEVICE,
                        recipient_id=str(device_id),
                        **common,
                    ),
                    now=now,
                )
            self.stats.resent += 1
        elif action is Action.SMS:
            await enqueue(
                session,
                OutboxRequest(
                    idempotency_key=sms_key(check_in.id),
                    channel=Channel.SMS,
                    kind=MessageKind.CHECK_IN_REMINDER,
                    recipient_type=RecipientType.PATIENT_PHONE,
                    recipient_id=str(check_in.patient_id),
                    **common,
                ),
                now=now,
            )
            self.stats.texted += 1
        else:
            connection = await session.connection()
            task_id = await repository.add_task(
                connection,
                task_id=uuid7(),
                clinic_id=check_in.clinic_id,
                patient_id=check_in.patient_id,
                check_in_id=check_in.id,
                kind=TASK_PATIENT_UNREACHED,
                now=now,
            )
            for staff_id in await first_responders(connection, check_in.clinic_id, care_team_id):
                await enqueue(
                    session,
                    OutboxRequest(
                        idempotency_key=unreached_key(check_in.id, staff_id),
                        channel=STAFF_CHANNEL,
                        kind=MessageKind.PATIENT_UNREACHED,
                        recipient_type=RecipientType.STAFF,
                        recipient_id=str(staff_id),
                        clinic_id=check_in.clinic_id,
                        task_id=str(task_id),
                        # The task outlives the window: staff follow up the next day too.
                        ttl_seconds=3 * 24 * 3600,
                    ),
                    now=now,
                )
            self.stats.tasks += 1


def register_fallback_timer(
    runtime: "Runtime", engine: AsyncEngine, instance: str, on_enqueued: Callable[[], None]
) -> FallbackTimer:
    """Every instance runs the timer (the rows are the queue; claims keep steps exactly-once)."""
    timer = FallbackTimer(engine, instance=instance, clock=runtime.clock, on_enqueued=on_enqueued)

    async def tick() -> None:
        await timer.drain()

    runtime.timers.every(
        "check-in-fallback", min(runtime.settings.timer_interval_seconds, 5.0), tick
    )
    return timer
