"""PostgreSQL aborts a transaction that conflicts with a concurrent one (a deadlock, a
serialization failure). Nothing was written and the same request succeeds when sent again, so
the caller gets a 503 problem with Retry-After, never a 500 (backend/lib/problems.py).

Both conflicts are real ones between the request's transaction and another connection."""

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar, post
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.app import create_app
from backend.db.engine import create_engine
from backend.state import Runtime
from tests.conftest import SettingsFactory
from tests.races import until_blocked

pytestmark = pytest.mark.postgres

# The test client serves the app from its own event loop: the other connection is opened there
# too, by the route, from the app's engine; the test reads the outcome afterwards.


@post("/test/deadlock", opt={"public": True})
async def _deadlock(
    db_session: NamedDependency[AsyncSession], runtime: NamedDependency[Runtime]
) -> None:
    engine = runtime.require_engine()
    request_holds = asyncio.Event()

    async def other() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("SET LOCAL deadlock_timeout = '10s'"))
            await connection.execute(text("SELECT id FROM probe WHERE id = 2 FOR UPDATE"))
            await request_holds.wait()
            await connection.execute(text("SELECT id FROM probe WHERE id = 1 FOR UPDATE"))
            await connection.execute(text("INSERT INTO probe_writes VALUES ('other')"))

    task = asyncio.create_task(other())
    try:
        connection = await db_session.connection()
        # The request is the one PostgreSQL picks: it checks for a deadlock sooner than the other.
        await connection.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
        await connection.execute(text("INSERT INTO probe_writes VALUES ('request')"))
        await connection.execute(text("SELECT id FROM probe WHERE id = 1 FOR UPDATE"))
        request_holds.set()
        await until_blocked(engine)  # the other one holds row 2 and waits for row 1
        await connection.execute(text("SELECT id FROM probe WHERE id = 2 FOR UPDATE"))
    finally:
        # The deadlock aborted the request's transaction: the other one goes on and commits.
        await db_session.rollback()
        await asyncio.wait_for(task, timeout=30)


@post("/test/stale-update", opt={"public": True})
async def _stale_update(
    db_session: NamedDependency[AsyncSession], runtime: NamedDependency[Runtime]
) -> None:
    connection = await db_session.connection()
    await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    await connection.execute(text("INSERT INTO probe_writes VALUES ('request')"))
    await connection.execute(text("SELECT value FROM probe WHERE id = 1"))  # the snapshot
    async with runtime.require_engine().begin() as other:
        await other.execute(text("UPDATE probe SET value = 10 WHERE id = 1"))
        await other.execute(text("INSERT INTO probe_writes VALUES ('other')"))
    await connection.execute(text("UPDATE probe SET value = value + 1 WHERE id = 1"))


@pytest.fixture
async def conflicts(
    postgres_database_url: str, make_settings: SettingsFactory
) -> AsyncIterator[tuple[AsyncTestClient[Litestar], AsyncEngine]]:
    settings = make_settings(postgres_database_url)
    engine = create_engine(settings)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE probe (id int PRIMARY KEY, value int)"))
        await connection.execute(text("INSERT INTO probe VALUES (1, 0), (2, 0)"))
        await connection.execute(text("CREATE TABLE probe_writes (what text)"))
    app = create_app(settings, extra_route_handlers=[_deadlock, _stale_update])
    try:
        async with AsyncTestClient(app=app) as client:
            yield client, engine
    finally:
        await engine.dispose()


async def _writes(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.scalars(text("SELECT what FROM probe_writes"))).all())


def _assert_retry_later(
    status: int, headers: dict[str, str], body: str, caplog: pytest.LogCaptureFixture, code: str
) -> None:
    assert status == 503, body
    assert headers["retry-after"] == "2"
    assert headers["content-type"].startswith("application/problem+json")
    assert "service-unavailable" in body
    assert "send it again" in body
    conflicts = [r for r in caplog.records if r.getMessage() == "transaction conflict"]
    assert [r.levelno for r in conflicts] == [logging.WARNING]
    assert conflicts[0].__dict__["fields"]["sqlstate"] == code
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_deadlock_is_a_503_and_nothing_is_saved(
    conflicts: tuple[AsyncTestClient[Litestar], AsyncEngine], caplog: pytest.LogCaptureFixture
) -> None:
    client, engine = conflicts
    with caplog.at_level(logging.WARNING):
        answer = await client.post("/test/deadlock")
    _assert_retry_later(answer.status_code, dict(answer.headers), answer.text, caplog, "40P01")
    assert await _writes(engine) == ["other"]  # the request's own write was rolled back


async def test_a_serialization_failure_is_a_503_and_nothing_is_saved(
    conflicts: tuple[AsyncTestClient[Litestar], AsyncEngine], caplog: pytest.LogCaptureFixture
) -> None:
    client, engine = conflicts
    with caplog.at_level(logging.WARNING):
        answer = await client.post("/test/stale-update")
    _assert_retry_later(answer.status_code, dict(answer.headers), answer.text, caplog, "40001")
    assert await _writes(engine) == ["other"]
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT value FROM probe WHERE id = 1")) == 10
