"""Request-scoped dependencies shared by every domain area."""

from collections.abc import AsyncGenerator

from litestar.datastructures import State
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.outbox.enqueue import WAKE_FLAG
from backend.state import Runtime


def provide_runtime(state: State) -> Runtime:
    runtime = state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


async def provide_db_session(state: State) -> AsyncGenerator[AsyncSession, None]:
    """One session per request: committed when the handler succeeds, rolled back when it raises.

    Services never commit (DESIGN §2); this is the unit-of-work boundary for HTTP.
    """
    runtime = provide_runtime(state)
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
