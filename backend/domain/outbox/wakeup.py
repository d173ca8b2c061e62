"""Cross-instance wake-up on PostgreSQL: LISTEN for the outbox's NOTIFY, wake the dispatcher.

Polling stays the safety net: if this connection drops, messages still go out on the next tick,
and the listener reconnects with backoff.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from backend.domain.outbox.repository import NOTIFY_CHANNEL

logger = logging.getLogger("interlude.outbox")


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


class PostgresWakeup:
    def __init__(self, database_url: str, on_notify: Callable[[], None]) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._on_notify = on_notify
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(self._dsn, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                logger.warning(
                    "outbox listener cannot connect; polling continues",
                    extra={"fields": {"error_type": type(error).__name__}},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5

            def _notified(*_args: Any) -> None:
                self._on_notify()

            try:
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(NOTIFY_CHANNEL, _notified)
                self.connected.set()
                # A notification may have been missed while (re)connecting: drain once.
                self._on_notify()
                await lost.wait()
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await connection.close(timeout=2)


def _setter(event: asyncio.Event) -> Callable[..., None]:
    def set_event(*_args: Any) -> None:
        event.set()

    return set_event
