"""Request-scoped dependencies shared by every domain area."""

from collections.abc import AsyncGenerator

from litestar.datastructures import State
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.state import Runtime


def provide_runtime(state: State) -> Runtime:
    runtime = state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


async def provide_db_session(state: State) -> AsyncGenerator[AsyncSession, None]:
    """One session per request: committed when the handler succeeds, rolled back when it raises.

    Services never commit (DESIGN §2); this is the unit-of-work boundary for HTTP.
    """
    async with provide_runtime(state).require_sessionmaker()() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        else:
            await session.commit()
