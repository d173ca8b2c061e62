"""Two transactions racing for one object, for the tests of conditional writes (If-Match)."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.lib.errors import PreconditionFailed
from backend.state import Runtime


async def until_blocked(engine: AsyncEngine) -> None:
    """Until another transaction waits for a lock (PostgreSQL), bounded; on SQLite the second
    writer waits for the only connection, which no query can see: a short pause instead."""
    if engine.dialect.name != "postgresql":
        await asyncio.sleep(0.2)
        return
    for _ in range(100):
        async with engine.connect() as connection:
            waiting = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second write never waited for the first")


async def race(
    runtime: Runtime,
    first: Callable[[AsyncSession], Awaitable[None]],
    second: Callable[[AsyncSession], Awaitable[None]],
) -> None:
    """``first`` writes in an open transaction; ``second`` starts in its own, must wait for the
    first one's commit, and then runs to its end (its exception, if any, is raised here)."""
    maker = runtime.require_sessionmaker()

    async def alone() -> None:
        async with maker() as session:
            await second(session)
            await session.commit()

    async with maker() as session:
        await first(session)
        task = asyncio.create_task(alone())
        await until_blocked(runtime.require_engine())
        assert not task.done(), "the second write did not wait for the first"
        await session.commit()
    await asyncio.wait_for(task, timeout=30)


async def second_refused_as_stale(
    runtime: Runtime,
    first: Callable[[AsyncSession], Awaitable[None]],
    second: Callable[[AsyncSession], Awaitable[None]],
) -> None:
    """Two writes checking the same If-Match version: the second waits for the first (a row
    lock on PostgreSQL, one writer at a time on SQLite), then is refused as stale."""
    with pytest.raises(PreconditionFailed):
        await race(runtime, first, second)
