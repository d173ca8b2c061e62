"""The running app: probes, problem details for every failure, request ids, start-up guards."""

import logging
from collections.abc import AsyncIterator

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.app import DatabaseNotMigrated, create_app
from backend.config import Settings
from backend.lib.logging import JsonFormatter
from backend.system.single_instance import AnotherInstanceRunning
from tests.conftest import SettingsFactory


class _Reading(msgspec.Struct, forbid_unknown_fields=True):
    systolic: int = msgspec.field(default=0)
    diastolic: int = msgspec.field(default=0)


@post("/test/readings", opt={"public": True})
async def _create_reading(data: JSONBody[_Reading]) -> dict[str, int]:
    return {"systolic": data.systolic}


@get("/test/boom/{item_id:str}", opt={"public": True})
async def _boom(item_id: FromPath[str]) -> None:
    msg = f"secret detail about {item_id}"
    raise RuntimeError(msg)


@get("/test/db", opt={"public": True})
async def _touch_database(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    connection = await db_session.connection()
    return {"one": int(await connection.scalar(text("SELECT 1")) or 0)}


_TEST_ROUTES = [_create_reading, _boom, _touch_database]


@pytest.fixture
async def test_client(settings: Settings) -> AsyncIterator["AsyncTestClient[Litestar]"]:
    app = create_app(settings, extra_route_handlers=_TEST_ROUTES)
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_healthz_and_readyz_answer_200(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "database": "ok",
        "schema": "ok",
        "timers": "ok",
        "keys": "ok",
    }


async def test_readyz_is_503_when_timers_stop(client: AsyncTestClient[Litestar]) -> None:
    runtime = client.app.state.runtime
    await runtime.timers.shutdown()
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["checks"]["timers"] == "not running"


async def test_readyz_is_503_when_the_database_is_gone(
    client: AsyncTestClient[Litestar], make_settings: SettingsFactory, tmp_path: object
) -> None:
    from backend.db.engine import create_engine

    runtime = client.app.state.runtime
    healthy = runtime.engine
    runtime.engine = create_engine(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/nowhere"))
    try:
        response = await client.get("/readyz")
    finally:
        await runtime.engine.dispose()
        runtime.engine = healthy
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unreachable"


async def test_openapi_schema_is_served(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "/readyz" in response.json()["paths"]


async def test_unknown_path_is_a_problem_document(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 404
    assert body["title"] == "Not Found"
    assert body["request_id"]


async def test_wrong_method_is_405_with_allow_header(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/healthz", content=b"{}")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"systolic": "high"}',
        b'{"unknown": 1}',
        b"\xff\xfe",
        b"",
    ],
)
async def test_malformed_body_is_a_400_problem_naming_the_field(
    test_client: AsyncTestClient[Litestar], body: bytes
) -> None:
    response = await test_client.post(
        "/test/readings", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400
    assert problem["type"] == "about:blank"


async def test_a_validation_problem_points_at_the_field(
    test_client: AsyncTestClient[Litestar],
) -> None:
    response = await test_client.post("/test/readings", json={"systolic": "high"})
    errors = response.json()["errors"]
    assert errors[0]["pointer"] == "systolic"


class _Flags(msgspec.Struct, forbid_unknown_fields=True):
    consent: bool
    count: int
    ratio: float = 0.0
    readings: list[_Reading] = msgspec.field(default_factory=list)


@post("/test/flags", opt={"public": True})
async def _flags(data: JSONBody[_Flags]) -> dict[str, object]:
    return msgspec.to_builtins(data)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"consent": "false", "count": 1}, "consent"),
        ({"consent": 0, "count": 1}, "consent"),
        ({"consent": True, "count": "12"}, "count"),
        ({"consent": True, "count": 12.0}, "count"),
        ({"consent": True, "count": 1, "readings": [{"systolic": "140"}]}, "readings[0].systolic"),
    ],
)
async def test_json_values_of_the_wrong_type_are_refused_not_coerced(
    settings: Settings, body: dict[str, object], pointer: str
) -> None:
    # The framework alone would turn "false" into False and "12" into 12.
    app = create_app(settings, extra_route_handlers=[_flags])
    async with AsyncTestClient(app=app) as client:
        response = await client.post("/test/flags", json=body)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        [error] = response.json()["errors"]
        assert error["pointer"] == pointer
        assert "Expected" in error["message"]
        # The request id (random hex) may hold any digits: not part of the check.
        shown = response.text.replace(response.json()["request_id"], "")
        assert "140" not in shown
        assert '"12"' not in shown

        # The exact types pass, an int where a float is asked included (JSON has one number).
        good = {"consent": False, "count": 12, "ratio": 1, "readings": [{"systolic": 140}]}
        accepted = await client.post("/test/flags", json=good)
        assert accepted.status_code == 201, accepted.text
        assert accepted.json() == {
            **good,
            "ratio": 1.0,
            "readings": [{"systolic": 140, "diastolic": 0}],
        }


async def test_every_write_endpoint_rejects_a_malformed_body_with_a_problem(
    test_client: AsyncTestClient[Litestar],
) -> None:
    """Generated from the route table: a new endpoint is covered the day it is added."""
    exercised = 0
    for route in test_client.app.routes:
        for method in sorted(set(getattr(route, "methods", ())) & {"POST", "PUT", "PATCH"}):
            path = route.path.replace("{", "").replace("}", "")
            path = "/".join(part.split(":")[0] if ":" in part else part for part in path.split("/"))
            response = await test_client.request(
                method, path, content=b"{not json", headers={"content-type": "application/json"}
            )
            assert 400 <= response.status_code < 500, (method, route.path, response.status_code)
            assert response.headers["content-type"].startswith("application/problem+json")
            exercised += 1
    assert exercised >= 1


async def test_an_unexpected_failure_is_a_500_that_reveals_nothing(
    test_client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="interlude.http"):
        response = await test_client.get("/test/boom/patient-name-here")
    assert response.status_code == 500
    problem = response.json()
    assert problem["title"] == "Internal Server Error"
    assert "secret" not in response.text
    assert "patient-name-here" not in response.text
    assert problem["request_id"] in problem["detail"]
    assert any(r.getMessage() == "unhandled exception" for r in caplog.records)


async def test_request_id_is_echoed_or_generated(client: AsyncTestClient[Litestar]) -> None:
    given = await client.get("/healthz", headers={"x-request-id": "abc12345-trace"})
    assert given.headers["x-request-id"] == "abc12345-trace"
    generated = await client.get("/healthz", headers={"x-request-id": "bad id\n"})
    assert generated.headers["x-request-id"] != "bad id\n"
    assert len(generated.headers["x-request-id"]) == 32


async def test_access_log_names_the_route_template_not_the_raw_path(
    test_client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="interlude.http"):
        await test_client.get("/test/boom/jane-doe?email=jane@example.org")
    fields = [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "request"]
    assert fields
    assert fields[-1]["route"] == "/test/boom/{item_id}"
    rendered = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "/test/boom/{item_id}" in rendered
    assert "jane" not in rendered
    assert "secret detail" not in rendered
    assert "RuntimeError (message withheld)" in rendered


async def test_start_refuses_an_unmigrated_database(
    empty_database_url: str, make_settings: SettingsFactory
) -> None:
    app = create_app(make_settings(empty_database_url))
    with pytest.raises(ExceptionGroup) as raised:
        async with AsyncTestClient(app=app):
            pass
    assert raised.group_contains(DatabaseNotMigrated)


async def test_a_second_instance_on_the_same_sqlite_file_is_refused(
    make_settings: SettingsFactory, tmp_path: object
) -> None:
    from pathlib import Path

    from backend.db import migrate

    url = f"sqlite+aiosqlite:///{Path(str(tmp_path)) / 'one.sqlite3'}"
    settings = make_settings(url)
    await migrate.upgrade_async(settings)
    async with AsyncTestClient(app=create_app(settings)) as first:
        assert (await first.get("/readyz")).status_code == 200
        with pytest.raises(ExceptionGroup) as raised:
            async with AsyncTestClient(app=create_app(settings)):
                pass
        assert raised.group_contains(AnotherInstanceRunning)
    # Once the first stops, a new instance may start.
    async with AsyncTestClient(app=create_app(settings)) as again:
        assert (await again.get("/readyz")).status_code == 200


async def test_instances_are_registered_and_marked_stopped(
    database_url: str, make_settings: SettingsFactory
) -> None:
    from sqlalchemy import select

    from backend.db.engine import create_engine
    from backend.db.models import ServiceInstance

    settings = make_settings(database_url, instance_id="node-a")
    async with AsyncTestClient(app=create_app(settings)):
        pass
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            table = ServiceInstance.__table__  # type: ignore[attr-defined]
            rows = (await connection.execute(select(table))).mappings().all()
    finally:
        await engine.dispose()
    assert len(rows) == 1
    assert rows[0]["name"] == "node-a"
    assert rows[0]["stopped_at"] is not None
    assert rows[0]["heartbeat_at"] >= rows[0]["started_at"]


async def test_an_unreachable_database_is_a_503_with_retry_after(
    test_client: AsyncTestClient[Litestar], make_settings: SettingsFactory
) -> None:
    from backend.db.engine import create_engine, create_sessionmaker

    assert (await test_client.get("/test/db")).json() == {"one": 1}
    runtime = test_client.app.state.runtime
    healthy = runtime.sessionmaker
    gone = create_engine(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/nowhere"))
    runtime.sessionmaker = create_sessionmaker(gone)
    try:
        response = await test_client.get("/test/db")
    finally:
        runtime.sessionmaker = healthy
        await gone.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "nowhere" not in response.text
    assert "nobody" not in response.text
