"""The dispatcher: claim due outbox rows with a lease, send them, record what happened.

It runs on every instance. A timer drains it on an interval (the safety net); a commit that
enqueued something wakes it at once (in-process flag, and PostgreSQL NOTIFY for the others).
State changes are exactly-once (guarded by the lease owner); sends are at-least-once, with the
message's idempotency key passed to every provider.
"""

import asyncio
import logging
import random
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol

import msgspec
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.domain.fallback import repository as fallback
from backend.domain.outbox import repository
from backend.domain.outbox.gate import SEND, Drop, Hold, MessageGate, Route, Send
from backend.domain.outbox.policy import RetryPolicy, Verdict, decide
from backend.domain.outbox.recipients import (
    RecipientResolver,
    RecipientUnavailable,
    resolve_all,
)
from backend.lib.clock import Clock
from notifications.base import (
    Channel,
    DeliveryStatus,
    FailureReason,
    Message,
    MessageData,
    Receipt,
    Urgency,
    WebPushSubscription,
)
from notifications.templates import MessageKind

logger = logging.getLogger("interlude.outbox")


class Sender(Protocol):
    """Anything that sends a message over its channel: one notifier or the channel registry."""

    async def send(self, message: Message) -> Receipt: ...


class DispatchStats(msgspec.Struct, kw_only=True):
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    cancelled: int = 0
    held: int = 0
    dropped: int = 0


class Dispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        notifier: Sender,
        resolver: RecipientResolver,
        *,
        instance: str,
        clock: Clock,
        policy: RetryPolicy | None = None,
        batch_size: int = 50,
        lease: timedelta = timedelta(seconds=60),
        concurrency: int = 32,
        rng: random.Random | None = None,
        gate: MessageGate | None = None,
    ) -> None:
        self._engine = engine
        # One notifier for every channel: in the app, the NotifierRegistry that routes by channel.
        self._notifier = notifier
        self._resolver = resolver
        self._instance = instance
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._batch_size = batch_size
        self._lease = lease
        self._slots = asyncio.Semaphore(concurrency)
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not secrets)
        # Recipients' preferences (channels, quiet hours, on call), read once per claimed batch.
        self.gate = gate
        self._lock = asyncio.Lock()
        self._again = False
        self._task: asyncio.Task[None] | None = None
        self.stats = DispatchStats()

    def wake(self) -> None:
        """Drain soon, without waiting for the next timer tick (called after a commit)."""
        if self._lock.locked():
            self._again = True
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain_logged())

    async def _drain_logged(self) -> None:
        try:
            await self.drain()
        except Exception:
            logger.exception("outbox drain failed; the timer will retry")

    async def drain(self) -> int:
        """Send everything due now; returns how many messages were claimed."""
        total = 0
        async with self._lock:
            while True:
                self._again = False
                claimed = await self.run_once()
                total += claimed
                if claimed < self._batch_size and not self._again:
                    return total

    async def close(self, grace_seconds: float = 10.0) -> None:
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
            except TimeoutError:
                self._task.cancel()

    async def run_once(self) -> int:
        now = self._clock.now()
        async with self._engine.begin() as connection:
            self.stats.cancelled += await repository.cancel_expired(connection, now=now)
            rows = await repository.claim_due(
                connection,
                instance=self._instance,
                now=now,
                lease=self._lease,
                limit=self._batch_size,
            )
            routes: Mapping[uuid.UUID, Route] = {}
            if rows and self.gate is not None:
                routes = await self.gate.routes(connection, rows, now)
        if not rows:
            return 0
        self.stats.claimed += len(rows)
        addresses = await self._resolve_all(rows, routes)
        outcomes = await asyncio.gather(
            *(self._send(row, routes.get(row.id, SEND), addresses.get(row.id)) for row in rows)
        )
        done = self._clock.now()
        delivered = [
            (row, outcome)
            for row, outcome in zip(rows, outcomes, strict=True)
            if isinstance(outcome, Receipt) and outcome.succeeded
        ]
        async with self._engine.begin() as connection:
            owned = await repository.mark_sent_many(
                connection,
                [(row.id, r.provider_message_id, r.http_status) for row, r in delivered],
                instance=self._instance,
                now=done,
            )
            for row, receipt in delivered:
                self.stats.sent += 1
                self._log(row, receipt, "sent" if row.id in owned else "lease_lost")
            for row, outcome in zip(rows, outcomes, strict=True):
                if not isinstance(outcome, Receipt):
                    await self._record_route(connection, row, outcome)
                elif not outcome.succeeded:
                    await self._record(connection, row, outcome, done)
        return len(rows)

    def _log(self, row: Row[Any], receipt: Receipt, outcome: str) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        fields = {
            "message": str(row.id),
            "channel": row.channel,
            "kind": row.kind,
            "attempt": int(row.attempts),
            "outcome": outcome,
            "reason": receipt.reason.value if receipt.reason else None,
        }
        logger.info("outbox send", extra={"fields": fields})

    async def _resolve_all(
        self, rows: list[Row[Any]], routes: Mapping[uuid.UUID, Route]
    ) -> dict[uuid.UUID, str | WebPushSubscription | Receipt]:
        """Every claimed row's address, read for the whole batch on one connection (one query
        per recipient type where the resolver batches, `resolve_all`)."""
        wanted: dict[uuid.UUID, tuple[str, str]] = {}
        found: dict[uuid.UUID, str | WebPushSubscription | Receipt] = {}
        for row in rows:
            route = routes.get(row.id, SEND)
            if not isinstance(route, Send):
                continue
            if route.recipient is not None:
                found[row.id] = route.recipient
            else:
                wanted[row.id] = (str(row.recipient_type), str(row.recipient_id))
        if not wanted:
            return found
        async with self._engine.connect() as connection:
            addresses = await resolve_all(self._resolver, connection, wanted.values())
        for row in rows:
            if row.id not in wanted:
                continue
            address = addresses.get(wanted[row.id])
            found[row.id] = (
                address
                if address is not None
                else _receipt(
                    row, DeliveryStatus.PERMANENT_FAILURE, FailureReason.RECIPIENT_INVALID
                )
            )
        return found

    async def _send(
        self, row: Row[Any], route: Route, address: str | WebPushSubscription | Receipt | None
    ) -> Receipt | Hold | Drop:
        if not isinstance(route, Send):
            return route
        if isinstance(address, Receipt):
            return address
        channel = str(row.channel)
        async with self._slots:
            try:
                if address is None:
                    raise RecipientUnavailable(row.recipient_type)
                message = self._message(row, address, route)
            except RecipientUnavailable:
                return _receipt(
                    row, DeliveryStatus.PERMANENT_FAILURE, FailureReason.RECIPIENT_INVALID
                )
            except ValueError:
                return _receipt(row, DeliveryStatus.PERMANENT_FAILURE, FailureReason.REJECTED)
            try:
                return await self._notifier.send(message)
            except Exception as error:  # notifiers should not raise; never lose the message
                logger.warning(
                    "notifier raised",
                    extra={"fields": {"channel": channel, "error_type": type(error).__name__}},
                )
                return _receipt(row, DeliveryStatus.RETRYABLE_FAILURE, FailureReason.PROTOCOL_ERROR)

    def _message(self, row: Row[Any], recipient: Any, route: Send = SEND) -> Message:
        ttl = int(row.ttl_seconds)
        if row.expires_at is not None:
            ttl = max(0, min(ttl, int((row.expires_at - self._clock.now()).total_seconds())))
        return Message(
            id=str(row.id),
            idempotency_key=provider_key(row.idempotency_key),
            channel=route.channel or Channel(row.channel),
            recipient=recipient,
            kind=MessageKind(row.kind),
            data=MessageData(
                check_in_id=row.check_in_id, alert_id=row.alert_id, task_id=row.task_id
            ),
            collapse_key=row.collapse_key,
            urgency=route.urgency or Urgency(row.urgency),
            ttl_seconds=ttl,
        )

    async def _record_route(self, connection: Any, row: Row[Any], route: Hold | Drop) -> None:
        if isinstance(route, Hold):
            owned = await repository.hold(
                connection, row.id, instance=self._instance, until=route.until, reason=route.reason
            )
            self.stats.held += 1
        else:
            owned = await repository.mark_unsent(
                connection,
                row.id,
                instance=self._instance,
                status="cancelled",
                reason=route.reason,
                http_status=None,
                next_attempt_at=None,
            )
            self.stats.dropped += 1
            if owned and row.kind == MessageKind.CHECK_IN_DUE and row.check_in_id is not None:
                # This push will never go: the check-in's fallback takes the next channel now.
                await fallback.hurry(connection, [row.check_in_id], now=self._clock.now())
        outcome = "held" if isinstance(route, Hold) else "dropped"
        logger.info(
            "outbox send",
            extra={
                "fields": {
                    "message": str(row.id),
                    "channel": row.channel,
                    "kind": row.kind,
                    "outcome": outcome if owned else "lease_lost",
                    "reason": route.reason,
                }
            },
        )

    async def _record(self, connection: Any, row: Row[Any], receipt: Receipt, now: Any) -> None:
        decision = decide(
            receipt,
            attempts=int(row.attempts),
            max_attempts=int(row.max_attempts),
            now=now,
            policy=self._policy,
            rng=self._rng,
        )
        fields = {
            "message": str(row.id),
            "channel": row.channel,
            "kind": row.kind,
            "attempt": int(row.attempts),
            "outcome": decision.verdict.value,
            "reason": receipt.reason.value if receipt.reason else None,
        }
        if decision.verdict is Verdict.SENT:
            owned = await repository.mark_sent(
                connection,
                row.id,
                instance=self._instance,
                now=now,
                provider_message_id=receipt.provider_message_id,
                http_status=receipt.http_status,
            )
            self.stats.sent += 1
        else:
            status = {Verdict.RETRY: "pending", Verdict.FAILED: "failed", Verdict.DEAD: "dead"}[
                decision.verdict
            ]
            owned = await repository.mark_unsent(
                connection,
                row.id,
                instance=self._instance,
                status=status,
                reason=receipt.reason.value if receipt.reason else None,
                http_status=receipt.http_status,
                next_attempt_at=decision.next_attempt_at,
            )
            if decision.verdict is Verdict.RETRY:
                self.stats.retried += 1
            elif decision.verdict is Verdict.FAILED:
                self.stats.failed += 1
            else:
                self.stats.dead += 1
        if not owned:
            fields["outcome"] = "lease_lost"
        level = (
            logging.WARNING if decision.verdict in (Verdict.DEAD, Verdict.FAILED) else logging.INFO
        )
        logger.log(level, "outbox send", extra={"fields": fields})


def _receipt(row: Row[Any], status: DeliveryStatus, reason: FailureReason) -> Receipt:
    return Receipt(
        message_id=str(row.id), channel=Channel(row.channel), status=status, reason=reason
    )


def provider_key(key: str) -> str:
    """Providers get an identifier-shaped key; ours may hold any visible characters."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "interlude:outbox:" + key))
