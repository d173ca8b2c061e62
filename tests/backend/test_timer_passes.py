"""Cluster-wide timer passes (both databases): one instance runs each pass, whichever fires first
after it is due; racing claims give exactly one winner; the alert evaluation pass uses it."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.models import TimerPass
from backend.domain.alerts.jobs import EVALUATION_TIMER, run_evaluation_pass
from backend.system.timer_passes import EARLY_FRACTION, claim_pass
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    api,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
_t = TimerPass.__table__  # type: ignore[attr-defined]


async def _row(engine: AsyncEngine, name: str) -> tuple[str, datetime]:
    async with engine.connect() as connection:
        row = (await connection.execute(select(_t).where(_t.c.name == name))).one()
    return row.holder, row.due_at


async def test_the_first_instance_after_the_due_time_runs_the_pass(engine: AsyncEngine) -> None:
    assert await claim_pass(engine, "p", holder="a", now=NOW, interval=MINUTE)
    assert await _row(engine, "p") == ("a", NOW + MINUTE * EARLY_FRACTION)
    # Another replica's timer fires half a minute later: the pass was run, it skips.
    assert not await claim_pass(engine, "p", holder="b", now=NOW + MINUTE / 2, interval=MINUTE)
    assert not await claim_pass(engine, "p", holder="a", now=NOW + MINUTE / 2, interval=MINUTE)
    # Once due again, whoever fires first takes it.
    later = NOW + MINUTE * EARLY_FRACTION
    assert await claim_pass(engine, "p", holder="b", now=later, interval=MINUTE)
    assert await _row(engine, "p") == ("b", later + MINUTE * EARLY_FRACTION)
    # Passes are independent of one another.
    assert await claim_pass(engine, "other", holder="a", now=later, interval=MINUTE)


@pytest.mark.parametrize("existing", [False, True], ids=["first-run", "due-again"])
async def test_racing_claims_have_exactly_one_winner(engine: AsyncEngine, existing: bool) -> None:
    if existing:
        assert await claim_pass(engine, "p", holder="setup", now=NOW - MINUTE, interval=MINUTE)
    won = await asyncio.gather(
        *(claim_pass(engine, "p", holder=f"r{n}", now=NOW, interval=MINUTE) for n in range(8))
    )
    assert sorted(won) == [False] * 7 + [True]
    holder, due = await _row(engine, "p")
    assert holder == f"r{won.index(True)}"
    assert due == NOW + MINUTE * EARLY_FRACTION


async def test_the_alert_evaluation_pass_runs_once_per_interval(
    api: AsyncTestClient[Litestar],  # noqa: F811
    clock: MovableClock,
) -> None:
    runtime = runtime_of(api)
    engine = runtime.require_engine()
    # The app's own timer runs the pass when it starts; after that it waits a real minute.
    for _ in range(200):
        async with engine.connect() as connection:
            started = await connection.scalar(
                select(_t.c.name).where(_t.c.name == EVALUATION_TIMER)
            )
        if started is not None:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the app's evaluation timer never ran")
    clock.advance(days=1)
    assert await run_evaluation_pass(runtime)
    assert not await run_evaluation_pass(runtime)  # a second replica's timer, same minute
    clock.advance(seconds=59)
    assert await run_evaluation_pass(runtime)
    holder, due = await _row(engine, EVALUATION_TIMER)
    assert holder == runtime.instance_id
    assert due == clock.now() + MINUTE * EARLY_FRACTION
