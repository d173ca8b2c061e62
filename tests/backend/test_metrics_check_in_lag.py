"""/metrics: the check-in lag comes from the database (both dialects)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from backend.app import create_app
from backend.config import Settings
from backend.db.engine import create_engine
from backend.db.models.treatment import CheckIn
from tests.sessions.world import START, World
from tests.support import ManualClock

CHECK_INS = CheckIn.__table__  # type: ignore[attr-defined]
LAG = "interlude_check_in_lag_seconds"


def _lag(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LAG:
                return float(sample.value)
    raise AssertionError(f"{LAG} missing from the scrape")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START - timedelta(days=2))


@pytest.fixture
async def quiet_client(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A running app whose timers are stopped, so nothing sends the check-ins behind the test."""
    app = create_app(settings, clock=clock)
    async with AsyncTestClient(app=app) as client:
        await app.state.runtime.timers.shutdown()
        yield client


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def test_lag_is_the_wait_of_the_oldest_due_open_unsent_check_in(
    quiet_client: AsyncTestClient[Litestar], settings: Settings, clock: ManualClock
) -> None:
    engine = create_engine(settings)
    try:
        world = await World(engine, clock=clock).setup()
        patient = await world.patient()
        await world.record(patient)
        rows = sorted(await world.rows(patient), key=lambda r: _aware(r.due_at))
        first_due = _aware(rows[0].due_at)
        # The check-ins due first (several can share an instant), and the next one after them.
        first = [r.id for r in rows if _aware(r.due_at) == first_due]
        second = next(r for r in rows if _aware(r.due_at) > first_due)
        second_due = _aware(second.due_at)

        # Nothing due yet.
        assert _lag((await quiet_client.get("/metrics")).text) == 0.0

        clock.advance(seconds=(first_due - clock.now()).total_seconds() + 75)
        assert clock.now() < second_due
        assert _lag((await quiet_client.get("/metrics")).text) == 75.0

        # Claimed but not yet sent still waits; once sent it no longer does.
        async with engine.begin() as connection:
            await connection.execute(
                update(CHECK_INS).where(CHECK_INS.c.id.in_(first)).values(status="claimed")
            )
        assert _lag((await quiet_client.get("/metrics")).text) == 75.0
        async with engine.begin() as connection:
            await connection.execute(
                update(CHECK_INS).where(CHECK_INS.c.id.in_(first)).values(status="sent")
            )
        assert _lag((await quiet_client.get("/metrics")).text) == 0.0

        # A window that closed unsent is a missed check-in, not lag.
        clock.advance(seconds=(_aware(second.closes_at) - clock.now()).total_seconds() + 1)
        waiting = [
            r
            for r in rows
            if r.status in ("pending", "claimed")
            and r.id not in first
            and _aware(r.due_at) <= clock.now() < _aware(r.closes_at)
        ]
        expected = (
            (clock.now() - min(_aware(r.due_at) for r in waiting)).total_seconds()
            if waiting
            else 0.0
        )
        assert _lag((await quiet_client.get("/metrics")).text) == expected
    finally:
        await engine.dispose()
