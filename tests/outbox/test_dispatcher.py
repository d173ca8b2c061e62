"""The outbox end to end on both databases: enqueue in a transaction, claim with a lease, send to a
real HTTP receiver on 127.0.0.1, retry, dead-letter, expire, recover from a crashed instance."""

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.engine import create_engine
from backend.domain.outbox import repository
from backend.domain.outbox.dispatcher import Dispatcher
from backend.domain.outbox.enqueue import WAKE_FLAG, OutboxRequest, RecipientType, enqueue
from backend.domain.outbox.policy import RetryPolicy
from backend.domain.outbox.recipients import DirectResolver
from backend.domain.outbox.wakeup import PostgresWakeup
from notifications.base import Channel, Urgency
from notifications.templates import MessageKind
from notifications.webhook import WebhookConfig, WebhookEndpoint, WebhookNotifier, verify_webhook
from tests.conftest import SettingsFactory
from tests.notifications.servers import FakeServer, Recorded, Reply, serving, unused_port
from tests.support import ManualClock

SECRET = "receiver-shared-secret"


class Receiver:
    """A clinic system's webhook receiver: verifies signatures, counts idempotency keys."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.server = FakeServer(self.handle)

    async def handle(self, request: Recorded) -> Reply:
        verified = verify_webhook(SECRET, request.headers, request.body, datetime.now(UTC))
        self.keys[verified.idempotency_key] += 1
        return Reply(204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    async with serving(receiver.server) as base:
        yield receiver, base


_open_notifiers: list[WebhookNotifier] = []


@pytest.fixture(autouse=True)
async def _close_notifiers() -> AsyncIterator[None]:
    yield
    while _open_notifiers:
        await _open_notifiers.pop().aclose()


def _webhook(url: str) -> WebhookNotifier:
    notifier = WebhookNotifier(
        WebhookConfig(
            endpoints={"clinic-pager": WebhookEndpoint(url=url, secret=SECRET)},
            timeout_seconds=2.0,
        )
    )
    _open_notifiers.append(notifier)
    return notifier


def _dispatcher(
    engine: AsyncEngine, url: str, clock: ManualClock, instance: str = "node-a", **kw: object
) -> Dispatcher:
    return Dispatcher(
        engine,
        _webhook(url),
        DirectResolver(frozenset({RecipientType.WEBHOOK})),
        instance=instance,
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


def _request(key: str, **kw: object) -> OutboxRequest:
    return OutboxRequest(
        idempotency_key=key,
        channel=Channel.WEBHOOK,
        kind=MessageKind.ALERT,
        recipient_type=RecipientType.WEBHOOK,
        recipient_id="clinic-pager",
        alert_id=str(uuid.uuid4()),
        **kw,  # type: ignore[arg-type]
    )


async def _enqueue(engine: AsyncEngine, *requests: OutboxRequest, now: datetime) -> list[bool]:
    sessions = async_sessionmaker(engine, class_=AsyncSession)
    async with sessions() as session:
        added = [await enqueue(session, request, now=now) for request in requests]
        assert session.info.get(WAKE_FLAG) is any(added) or not any(added)
        await session.commit()
    return added


async def _statuses(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(repository.TABLE.c.status))
        return Counter(str(status) for (status,) in rows.all())


async def test_an_enqueued_message_is_delivered_once_with_its_idempotency_key(
    engine: AsyncEngine, receiver: tuple[Receiver, str]
) -> None:
    server, base = receiver
    clock = ManualClock()
    assert await _enqueue(engine, _request("alert-1"), now=clock.now()) == [True]
    assert await _enqueue(engine, _request("alert-1"), now=clock.now()) == [False]

    dispatcher = _dispatcher(engine, base + "/hook", clock)
    assert await dispatcher.drain() == 1
    assert await dispatcher.drain() == 0
    assert await _statuses(engine) == Counter({"sent": 1})
    assert list(server.keys.values()) == [1]


async def test_a_failing_receiver_causes_retries_with_backoff_then_a_dead_letter(
    engine: AsyncEngine, receiver: tuple[Receiver, str]
) -> None:
    server, base = receiver
    clock = ManualClock()
    await _enqueue(engine, _request("alert-2", max_attempts=3), now=clock.now())
    dispatcher = _dispatcher(
        engine, base + "/hook", clock, policy=RetryPolicy(base_seconds=1, cap_seconds=10)
    )
    for attempt in range(1, 4):
        server.server.queued.append(Reply(503))
        assert await dispatcher.run_once() == 1, attempt
        assert await dispatcher.run_once() == 0  # not due again until the backoff passes
        clock.advance(seconds=11)
    assert await _statuses(engine) == Counter({"dead": 1})
    assert len(server.server.requests) == 3
    assert not server.keys  # the receiver never accepted it
    assert dispatcher.stats.dead == 1


async def test_an_unreachable_receiver_is_retried_not_lost(engine: AsyncEngine) -> None:
    clock = ManualClock()
    await _enqueue(engine, _request("alert-3"), now=clock.now())
    dispatcher = _dispatcher(engine, f"http://127.0.0.1:{unused_port()}/hook", clock)
    assert await dispatcher.run_once() == 1
    async with engine.connect() as connection:
        row = (await connection.execute(select(repository.TABLE))).one()
    assert row.status == "pending"
    assert row.attempts == 1
    assert row.last_reason == "connection_failed"
    assert row.next_attempt_at >= clock.now()


async def test_a_message_past_its_expiry_is_cancelled_not_sent_late(
    engine: AsyncEngine, receiver: tuple[Receiver, str]
) -> None:
    server, base = receiver
    clock = ManualClock()
    await _enqueue(
        engine, _request("check-in-7", expires_at=clock.advance(minutes=0)), now=clock.now()
    )
    clock.advance(minutes=1)
    assert await _dispatcher(engine, base + "/hook", clock).drain() == 0
    assert await _statuses(engine) == Counter({"cancelled": 1})
    assert not server.server.requests


async def test_a_crashed_instances_lease_expires_and_another_sends_the_message(
    engine: AsyncEngine, receiver: tuple[Receiver, str]
) -> None:
    server, base = receiver
    clock = ManualClock()
    await _enqueue(engine, _request("alert-4"), now=clock.now())
    async with engine.begin() as connection:  # node-a claims, then dies before sending
        claimed = await repository.claim_due(
            connection, instance="node-a", now=clock.now(), lease=timedelta(seconds=60), limit=10
        )
    assert len(claimed) == 1
    node_b = _dispatcher(engine, base + "/hook", clock, instance="node-b")
    assert await node_b.drain() == 0  # the lease still holds
    clock.advance(seconds=61)
    assert await node_b.drain() == 1
    async with engine.begin() as connection:  # node-a comes back late: it owns nothing now
        assert not await repository.mark_sent(
            connection,
            claimed[0].id,
            instance="node-a",
            now=clock.now(),
            provider_message_id=None,
            http_status=None,
        )
    assert await _statuses(engine) == Counter({"sent": 1})
    assert list(server.keys.values()) == [1]


@pytest.mark.postgres
async def test_two_instances_draining_together_send_every_message_exactly_once(
    make_settings: SettingsFactory, postgres_database_url: str, receiver: tuple[Receiver, str]
) -> None:
    url = postgres_database_url
    server, base = receiver
    clock = ManualClock()
    engine_a = create_engine(make_settings(url))
    engine_b = create_engine(make_settings(url))
    try:
        await _enqueue(engine_a, *(_request(f"bulk-{i}") for i in range(300)), now=clock.now())
        a = _dispatcher(engine_a, base + "/hook", clock, instance="node-a", batch_size=20)
        b = _dispatcher(engine_b, base + "/hook", clock, instance="node-b", batch_size=20)
        claimed = await asyncio.gather(a.drain(), b.drain())
        assert sum(claimed) == 300
        assert min(claimed) > 0  # both really worked
        assert await _statuses(engine_a) == Counter({"sent": 300})
        assert len(server.keys) == 300
        assert set(server.keys.values()) == {1}
    finally:
        await engine_a.dispose()
        await engine_b.dispose()


@pytest.mark.postgres
async def test_a_commit_on_one_connection_wakes_listeners_at_once(
    make_settings: SettingsFactory, postgres_database_url: str
) -> None:
    url = postgres_database_url
    woke = asyncio.Event()
    wakeup = PostgresWakeup(url, woke.set)
    wakeup.start()
    engine = create_engine(make_settings(url))
    try:
        await asyncio.wait_for(wakeup.connected.wait(), 10)
        woke.clear()  # the listener drains once on connect
        await _enqueue(engine, _request("wake-1"), now=ManualClock().now())
        await asyncio.wait_for(woke.wait(), 5)
    finally:
        await wakeup.stop()
        await engine.dispose()


async def test_a_claim_takes_at_most_its_batch(engine: AsyncEngine) -> None:
    # PostgreSQL may re-run an IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED) subquery per row
    # and update far more than n rows: a batch must stay a batch.
    clock = ManualClock()
    await _enqueue(engine, *(_request(f"batch-{i}") for i in range(20)), now=clock.now())
    async with engine.begin() as connection:
        claimed = await repository.claim_due(
            connection, instance="node-a", now=clock.now(), lease=timedelta(seconds=60), limit=5
        )
    assert len(claimed) == 5
    assert await _statuses(engine) == Counter({"pending": 15, "claimed": 5})


async def test_an_urgent_message_is_claimed_before_a_backlog_of_routine_ones(
    engine: AsyncEngine,
) -> None:
    # An URGENT alert enqueued behind thousands of routine reminders must not wait for them.
    clock = ManualClock()
    routine = [_request(f"routine-{i}") for i in range(30)]
    await _enqueue(engine, *routine, now=clock.now() - timedelta(minutes=5))
    await _enqueue(engine, _request("urgent", urgency=Urgency.HIGH), now=clock.now())
    async with engine.begin() as connection:
        first = await repository.claim_due(
            connection, instance="node-a", now=clock.now(), lease=timedelta(seconds=60), limit=5
        )
    # Thirty routine messages are older, yet the urgent one is in the first batch of five; the
    # rest of the batch is the oldest routine ones, and nothing is claimed twice.
    keys = sorted(row.idempotency_key for row in first)
    assert keys == sorted(["urgent", *(f"routine-{i}" for i in range(4))])
    async with engine.begin() as connection:
        rest = await repository.claim_due(
            connection, instance="node-a", now=clock.now(), lease=timedelta(seconds=60), limit=50
        )
    assert len(rest) == 26
    assert not {r.id for r in rest} & {r.id for r in first}
