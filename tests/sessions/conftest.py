from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.engine import create_engine
from tests.conftest import SettingsFactory
from tests.sessions.world import World


@pytest.fixture
async def engine(database_url: str, make_settings: SettingsFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(database_url))
    yield engine
    await engine.dispose()


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await World(engine).setup()
