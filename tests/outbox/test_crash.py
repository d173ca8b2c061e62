"""Crash test (issue 8), on both databases: a dispatcher process is killed with SIGKILL while
messages are in flight and started again. Every message reaches the receiver at least once, the
outbox ends with every row sent, and the receiver's duplicate idempotency keys are counted,
reported, and bounded by what a crash can leave ambiguous: the sends in flight at the kill (at
most one batch; their outcome was never recorded, so they are sent again after the lease)."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.engine import create_engine
from backend.domain.outbox import repository
from backend.domain.outbox.enqueue import OutboxRequest, RecipientType, enqueue
from backend.lib.clock import SystemClock
from notifications.base import Channel
from notifications.templates import MessageKind
from notifications.webhook import verify_webhook
from tests.conftest import SettingsFactory
from tests.notifications.servers import FakeServer, Recorded, Reply, serving
from tests.outbox.crash_worker import SECRET

MESSAGES = 120
BATCH = 20  # the worker's batch size: at most this many sends are in flight at a kill


class SlowReceiver:
    """Verifies each signature, counts idempotency keys, answers after 50 ms (so sends are in
    flight when the worker dies)."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.arrived = 0
        self.server = FakeServer(self.handle)

    async def handle(self, request: Recorded) -> Reply:
        self.arrived += 1
        verified = verify_webhook(SECRET, request.headers, request.body, datetime.now(UTC))
        await asyncio.sleep(0.05)
        self.keys[verified.idempotency_key] += 1
        return Reply(204)


def _worker(database_url: str, webhook_url: str, instance: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLUDE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.outbox.crash_worker", database_url, webhook_url, instance],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready"
    return process


async def _wait_for(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _statuses(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        return await repository.status_counts(connection)


async def test_a_killed_dispatcher_loses_nothing_and_duplicates_only_its_in_flight_sends(
    database_url: str, make_settings: SettingsFactory
) -> None:
    engine = create_engine(make_settings(database_url))
    receiver = SlowReceiver()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with serving(receiver.server) as base:
            now = SystemClock().now()
            async with AsyncSession(engine) as session:
                for number in range(MESSAGES):
                    await enqueue(
                        session,
                        OutboxRequest(
                            idempotency_key=f"crash-{number}",
                            channel=Channel.WEBHOOK,
                            kind=MessageKind.ALERT,
                            recipient_type=RecipientType.WEBHOOK,
                            recipient_id="pager",
                        ),
                        now=now,
                    )
                await session.commit()
            url = make_settings(database_url).database_url
            workers.append(await asyncio.to_thread(_worker, url, base + "/hook", "crash-a"))
            await _wait_for(lambda: len(receiver.keys) >= MESSAGES // 3, 60)
            in_flight_at_kill = receiver.arrived - sum(receiver.keys.values())
            workers[0].send_signal(signal.SIGKILL)  # no shutdown: claims and sends cut off
            workers[0].wait(10)
            delivered_before_restart = len(receiver.keys)
            assert delivered_before_restart < MESSAGES, "the kill came too late to test anything"
            workers.append(await asyncio.to_thread(_worker, url, base + "/hook", "crash-b"))
            await _wait_for(lambda: len(receiver.keys) == MESSAGES, 90)

            async def all_sent() -> bool:
                return await _statuses(engine) == {"sent": MESSAGES}

            deadline = time.monotonic() + 30
            while not await all_sent():
                assert time.monotonic() < deadline, await _statuses(engine)
                await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
            if worker.stdout is not None:
                worker.stdout.close()
        async with engine.connect() as connection:
            attempts = await connection.scalar(select(func.sum(repository.TABLE.c.attempts)))
        await engine.dispose()
    duplicates = sum(receiver.keys.values()) - len(receiver.keys)
    print(  # noqa: T201  (the count issue 8 asks to report)
        f"\ncrash test ({database_url.split(':')[0]}): {MESSAGES} messages, "
        f"{delivered_before_restart} delivered before the kill, {in_flight_at_kill} in flight "
        f"at the kill, {duplicates} duplicate idempotency keys at the receiver, "
        f"{attempts} send attempts"
    )
    assert len(receiver.keys) == MESSAGES  # at least once: nothing lost
    assert duplicates <= BATCH  # only sends whose outcome the kill left unrecorded
