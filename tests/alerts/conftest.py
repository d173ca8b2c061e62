"""A running app with a movable clock and the identity test world (two clinics, staff logged in,
enrolled patients), for the stored-alert tests. Submissions go through the real service."""

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.config import Settings
from tests.identity.conftest import MovableClock, World, _test_engines, build_world


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def api(settings: Settings, clock: MovableClock) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as client:
        yield client
        engine = _test_engines.pop(id(client), None)
        if engine is not None:
            await engine.dispose()


@pytest.fixture
async def world(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:
    return await build_world(api, clock)
