"""Two transactions racing for one object, for the tests of conditional writes (If-Match)."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession


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
    maker: async_sessionmaker[Any],
    engine: AsyncEngine,
    first: Callable[[AsyncSession], Awaitable[None]],
    second: Callable[[AsyncSession], Awaitable[None]],
) -> None:
    """``first`` writes in an open transaction; ``second`` starts in its own, must wait for the
    first one's commit, and then runs to its end (its exception, if any, is raised here)."""

    async def alone() -> None:
        async with maker() as session:
            await second(session)
            await session.commit()

    async with maker() as session:
        await first(session)
        task = asyncio.create_task(alone())
        await until_blocked(engine)
        assert not task.done(), "the second write did not wait for the first"
        await session.commit()
    await asyncio.wait_for(task, timeout=30)
