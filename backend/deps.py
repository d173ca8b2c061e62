"""Request-scoped dependencies shared by every domain area."""

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from litestar.datastructures import State
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.outbox.enqueue import WAKE_FLAG
from backend.state import Runtime


def provide_runtime(state: State) -> Runtime:
    runtime = state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


@asynccontextmanager
async def unit_of_work(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    """One session: committed when the block succeeds, rolled back when it raises.

    Services never commit (DESIGN §2); this is the unit-of-work boundary for HTTP.
    """
    async with runtime.require_sessionmaker()() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        else:
            await session.commit()
            if session.info.pop(WAKE_FLAG, False) and runtime.dispatcher is not None:
                # The commit made outbox rows visible: send now, not at the next timer tick.
                runtime.dispatcher.wake()


async def provide_db_session(state: State) -> AsyncGenerator[AsyncSession, None]:
    """One session per request (`unit_of_work`), for handlers that ask for ``db_session``."""
    async with unit_of_work(provide_runtime(state)) as session:
        yield session
