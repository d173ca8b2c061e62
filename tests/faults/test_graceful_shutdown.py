"""SIGTERM on a real ``interlude serve``: requests in flight finish, sends in flight finish and
are recorded, no outbox lease is left behind, and the lifespan completes."""

import asyncio
import contextlib
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from bench.common import (
    WebhookReceiver,
    asyncpg_dsn,
    enqueue_webhooks,
    interlude_serve,
    make_world,
    outbox_statuses,
    service_env,
)

pytestmark = [pytest.mark.faults]

IN_FLIGHT_REQUESTS = 16
MESSAGES = 10


@contextlib.asynccontextmanager
async def _writes_held(database_url: str) -> AsyncIterator[None]:
    """Hold the database's writes (audit rows on PostgreSQL, every write on SQLite) from another
    connection, so requests that write wait, in flight, until the block ends."""
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        assert path is not None
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield
            connection.execute("COMMIT")
        finally:
            connection.close()
        return
    holder = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE audit_events IN SHARE MODE")
        yield
        await transaction.rollback()
    finally:
        await holder.close()


def _wait_for(condition: object, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    msg = "condition not met in time"
    raise AssertionError(msg)


def test_sigterm_finishes_in_flight_work_and_releases_leases(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    with WebhookReceiver() as receiver:
        config = receiver.write_config(tmp_path / "notifications.json")
        server = interlude_serve(
            database_url,
            data_dir,
            log=tmp_path / "serve.log",
            notifications_config=str(config),
            log_level="INFO",
            timer_interval_seconds="0.5",
        )
        server.start()
        try:
            world = make_world(server.base_url, service_env(database_url, data_dir))
            clinician = world.staff["clinician"]
            # Hold the outbox's sends in flight at the receiver when the signal arrives.
            receiver.delay = 2.0
            keys = asyncio.run(enqueue_webhooks(database_url, MESSAGES))
            _wait_for(lambda: receiver.arrived >= 1, timeout=15)

            async def requests_across_sigterm() -> list[int]:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                    async with _writes_held(database_url):
                        # Each read decrypts and audits: real work, all in flight at once, and
                        # none can finish while writes are held. (With a fixed 50 ms before the
                        # signal, a loaded machine once had not yet read some requests when it
                        # came; uvicorn rightly closes such connections.)
                        calls = [
                            asyncio.create_task(
                                client.get(
                                    f"/api/v1/patients/{world.patients[0].id}",
                                    headers=clinician.headers,
                                )
                            )
                            for _ in range(IN_FLIGHT_REQUESTS)
                        ]
                        await asyncio.sleep(1.0)
                        assert not any(call.done() for call in calls)
                        assert server.popen is not None
                        server.popen.send_signal(signal.SIGTERM)
                        await asyncio.sleep(0.5)
                    return [response.status_code for response in await asyncio.gather(*calls)]

            statuses = asyncio.run(requests_across_sigterm())
            assert server.popen is not None
            returncode = server.popen.wait(60)
        finally:
            server.kill()
        delivered = receiver.received()
    log = server.tail(200_000)
    assert statuses == [200] * IN_FLIGHT_REQUESTS, log[-3000:]
    # uvicorn re-raises the captured SIGTERM after a clean shutdown.
    assert returncode in (0, -signal.SIGTERM), log[-3000:]
    assert '"message":"stopped"' in log.replace(" ", ""), log[-3000:]
    counts = asyncio.run(outbox_statuses(database_url))
    assert counts.get("claimed", 0) == 0, counts
    # Sends in flight at the signal were finished and recorded, not abandoned.
    assert counts == {"sent": MESSAGES}, counts
    # The receiver sees the provider key derived from each message's key: one per message.
    assert len(set(delivered)) == len(keys) == MESSAGES
