"""The check-in timers: hand due check-ins to the outbox, send reminders, mark missed ones.

Every instance runs them (APScheduler interval jobs, `backend/timers.py`); the rows are the queue.
Each pass is one transaction: claim with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the
outbox's pattern), enqueue one CHECK_IN_DUE message per active device of the patient
(idempotency key per check-in and device), mark the check-in sent; a patient with no device gets
a fallback watch instead (SMS or a staff task, `backend.domain.fallback`). A crash before the
commit leaves nothing; after it, everything: each check-in reaches the outbox exactly once.

Order inside a pass: close first (windows that closed are marked missed), then claim (only
windows still open). After downtime, due check-ins still inside their window are sent and closed
ones are missed, never sent late (engineering-notes §C.5, DESIGN §6).
"""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.check_ins import repository
from backend.domain.fallback import repository as fallback
from backend.domain.outbox.enqueue import WAKE_FLAG, OutboxRequest, RecipientType, enqueue
from backend.lib.clock import Clock
from notifications.base import Channel, Urgency
from notifications.templates import MessageKind

logger = logging.getLogger("interlude.check_ins")

CHANNEL_BY_PLATFORM: dict[str, Channel] = {
    "ios": Channel.APNS,
    "android": Channel.FCM,
    "web": Channel.WEB_PUSH,
}


class DeliveryStats(msgspec.Struct, kw_only=True):
    handed_over: int = 0
    messages: int = 0
    reminders: int = 0
    missed: int = 0
    passes: int = 0


def due_message_key(check_in_id: uuid.UUID, device_id: uuid.UUID) -> str:
    return f"check-in:{check_in_id}:{device_id}"


def reminder_message_key(check_in_id: uuid.UUID, number: int, device_id: uuid.UUID) -> str:
    return f"check-in:{check_in_id}:reminder-{number}:{device_id}"


class CheckInTimers:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        instance: str,
        clock: Clock,
        batch_size: int = 200,
        lease: timedelta = timedelta(seconds=60),
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        self._instance = instance
        self._clock = clock
        self._batch_size = batch_size
        self._lease = lease
        self._on_enqueued = on_enqueued
        self.stats = DeliveryStats()

    async def drain(self) -> DeliveryStats:
        """Passes until nothing is left to do now; the stats of this drain."""
        total = DeliveryStats()
        while True:
            one = await self.run_once()
            total.handed_over += one.handed_over
            total.messages += one.messages
            total.reminders += one.reminders
            total.missed += one.missed
            total.passes += 1
            if max(one.handed_over, one.reminders, one.missed) < self._batch_size:
                return total

    async def run_once(self) -> DeliveryStats:
        """One transaction: close, claim and hand over, remind (at most a batch of each)."""
        now = self._clock.now()
        one = DeliveryStats(passes=1)
        async with self._sessions() as session:
            async with session.begin():
                connection = await session.connection()
                missed = await repository.mark_missed(connection, now=now, limit=self._batch_size)
                one.missed = len(missed)
                claimed = await repository.claim_due(
                    connection,
                    instance=self._instance,
                    now=now,
                    lease=self._lease,
                    limit=self._batch_size,
                )
                await self._hand_over(session, claimed, one, now)
                await self._remind(session, one, now)
            woke = session.info.pop(WAKE_FLAG, False)
        if woke and self._on_enqueued is not None:
            self._on_enqueued()
        self.stats.handed_over += one.handed_over
        self.stats.messages += one.messages
        self.stats.reminders += one.reminders
        self.stats.missed += one.missed
        self.stats.passes += 1
        if one.handed_over or one.missed or one.reminders:
            logger.info(
                "check-in timers",
                extra={
                    "fields": {
                        "handed_over": one.handed_over,
                        "messages": one.messages,
                        "reminders": one.reminders,
                        "missed": one.missed,
                    }
                },
            )
        return one

    async def _hand_over(
        self, session: AsyncSession, claimed: list[Any], one: DeliveryStats, now: datetime
    ) -> None:
        if not claimed:
            return
        connection = await session.connection()
        claimed = await self._drop_stopped(connection, claimed, now)
        devices = await repository.active_devices(connection, (r.patient_id for r in claimed))
        sent: list[tuple[uuid.UUID, int, datetime | None]] = []
        for row in claimed:
            targets = devices.get(row.patient_id, [])
            for device_id, platform in targets:
                added = await enqueue(
                    session,
                    _request(
                        row,
                        MessageKind.CHECK_IN_DUE,
                        due_message_key(row.id, device_id),
                        device_id,
                        platform,
                        now,
                    ),
                    now=now,
                )
                one.messages += int(added)
            if not targets:
                # No device: the check-in is still issued (the app shows it on its next open),
                # but no push will start the fallback watch, so start it here, due now: the
                # timer texts the patient at once if they opted in, else gives staff a task
                # before the window closes.
                await fallback.watch(
                    connection,
                    check_in_id=row.id,
                    clinic_id=row.clinic_id,
                    first_sent_at=now,
                    closes_at=row.closes_at,
                    next_at=now,
                )
            sent.append((row.id, len(targets), repository.next_reminder(row.reminders_at, now)))
        one.handed_over = await repository.mark_sent(
            connection, sent, instance=self._instance, now=now
        )

    @staticmethod
    async def _drop_stopped(
        connection: AsyncConnection, rows: list[Any], now: datetime
    ) -> list[Any]:
        """Check-ins of patients whose monitoring stopped (withdrawn, erased) are cancelled, not
        pushed: the patient no longer consents, and their answers would be refused."""
        stopped = await repository.monitoring_stopped(connection, (r.patient_id for r in rows))
        if not stopped:
            return rows
        await repository.cancel_issued(
            connection, [r.id for r in rows if r.patient_id in stopped], now=now
        )
        return [r for r in rows if r.patient_id not in stopped]

    async def _remind(self, session: AsyncSession, one: DeliveryStats, now: datetime) -> None:
        connection = await session.connection()
        rows = await repository.claim_reminders(connection, now=now, limit=self._batch_size)
        rows = await self._drop_stopped(connection, rows, now)
        if not rows:
            return
        devices = await repository.active_devices(connection, (r.patient_id for r in rows))
        for row in rows:
            number = int(row.reminders_sent) + 1
            for device_id, platform in devices.get(row.patient_id, []):
                added = await enqueue(
                    session,
                    _request(
                        row,
                        MessageKind.CHECK_IN_REMINDER,
                        reminder_message_key(row.id, number, device_id),
                        device_id,
                        platform,
                        now,
                    ),
                    now=now,
                )
                one.messages += int(added)
            # After downtime several reminders may be overdue: one is sent, the rest skipped.
            await repository.advance_reminder(
                connection,
                row.id,
                sent_number=number,
                next_at=repository.next_reminder(row.reminders_at, now),
                now=now,
            )
            one.reminders += 1


def _request(
    row: Any,
    kind: MessageKind,
    key: str,
    device_id: uuid.UUID,
    platform: str,
    now: datetime,
) -> OutboxRequest:
    closes: datetime = row.closes_at
    if row.during_quiet_hours:
        urgency = Urgency.LOW  # the whole window is quiet: deliver without waking anyone
    elif getattr(row, "priority", "normal") == "high":
        urgency = Urgency.HIGH
    else:
        urgency = Urgency.NORMAL
    return OutboxRequest(
        idempotency_key=key,
        channel=CHANNEL_BY_PLATFORM.get(platform, Channel.CONSOLE),
        kind=kind,
        recipient_type=RecipientType.DEVICE,
        recipient_id=str(device_id),
        clinic_id=row.clinic_id,
        check_in_id=str(row.id),
        # A reminder replaces the check-in's earlier notification on the phone.
        collapse_key=f"check-in:{row.id}",
        urgency=urgency,
        ttl_seconds=max(1, int((closes - now).total_seconds())),
        expires_at=closes,
    )
