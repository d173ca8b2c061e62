"""An app with a movable clock and a clinic whose patients have known identifying values.

Staff and patients are made through the real services and API (`tests/identity/conftest.py`
helpers); answers through the responses service; treatment courses and sessions as rows (with the
clinician's note encrypted under the patient's key, as the sessions area stores it) until the
sessions service lands.
"""

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.config import Settings
from tests.identity.conftest import MovableClock, _test_engines


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def export_app(settings: Settings, clock: MovableClock) -> Litestar:
    return create_app(settings, clock=clock)


@pytest.fixture
async def api(export_app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=export_app) as client:
        yield client
        engine = _test_engines.pop(id(client), None)
        if engine is not None:
            await engine.dispose()
