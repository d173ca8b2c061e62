import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sessions.world import World


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await World(engine).setup()
