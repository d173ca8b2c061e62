"""/metrics: Prometheus text, route templates not raw paths, outbox truth from the database,
timers, probes, a database outage, and no patient data in the scrape."""

import math
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec
import pytest
from litestar import Litestar, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.app import create_app
from backend.config import Settings
from backend.db.engine import create_engine
from backend.domain.outbox import repository as outbox
from backend.lib.errors import InvalidInput
from backend.system import metrics
from tests.conftest import SettingsFactory
from tests.support import ManualClock


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(text: str, name: str, **labels: str) -> float | None:
    return _samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def quiet_client(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A running app whose timers are stopped, so nothing drains the outbox behind the test."""
    app = create_app(settings, clock=clock)
    async with AsyncTestClient(app=app) as client:
        await app.state.runtime.timers.shutdown()
        yield client


def _row(clock: ManualClock, *, status: str, waited: timedelta) -> dict[str, object]:
    return msgspec.structs.asdict(
        outbox.NewOutboxRow(
            id=uuid.uuid4(),
            idempotency_key=uuid.uuid4().hex,
            clinic_id=None,
            channel="console",
            kind="check_in_due",
            recipient_type="console",
            recipient_id="ops",
            check_in_id=None,
            alert_id=None,
            task_id=None,
            collapse_key=None,
            urgency="normal",
            ttl_seconds=3600,
            max_attempts=8,
            next_attempt_at=clock.now() - waited,
            expires_at=None,
            created_at=clock.now() - waited,
            status=status,
        )
    )


async def test_metrics_is_public_prometheus_text(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "interlude_http_request_duration_seconds",
        "interlude_outbox_messages",
        "interlude_outbox_dead_letters",
        "interlude_outbox_oldest_due_age_seconds",
        "interlude_timer_healthy",
        "interlude_metrics_database_up",
        "interlude_build_info",
    } <= families
    assert _value(response.text, "interlude_metrics_database_up") == 1.0
    assert _value(response.text, "interlude_timers_running") == 1.0
    assert _value(response.text, "interlude_timer_healthy", timer="outbox") == 1.0


async def test_outbox_depth_age_and_dead_letters_come_from_the_database(
    quiet_client: AsyncTestClient[Litestar], clock: ManualClock
) -> None:
    runtime = quiet_client.app.state.runtime
    engine = create_engine(runtime.settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(outbox.TABLE),
                [
                    _row(clock, status="pending", waited=timedelta(seconds=90)),
                    _row(clock, status="pending", waited=timedelta(seconds=5)),
                    _row(clock, status="dead", waited=timedelta(hours=1)),
                ],
            )
    finally:
        await engine.dispose()
    text = (await quiet_client.get("/metrics")).text
    assert _value(text, "interlude_outbox_messages", status="pending") == 2.0
    assert _value(text, "interlude_outbox_messages", status="dead") == 1.0
    assert _value(text, "interlude_outbox_messages", status="sent") == 0.0
    assert _value(text, "interlude_outbox_dead_letters") == 1.0
    assert _value(text, "interlude_outbox_oldest_due_age_seconds") == 90.0
    # Stopped timers show up as unhealthy: an alert, not silence.
    assert _value(text, "interlude_timers_running") == 0.0


async def test_empty_outbox_has_zero_age(quiet_client: AsyncTestClient[Litestar]) -> None:
    text = (await quiet_client.get("/metrics")).text
    assert _value(text, "interlude_outbox_oldest_due_age_seconds") == 0.0
    assert _value(text, "interlude_outbox_dead_letters") == 0.0


async def test_requests_are_labelled_by_route_template_and_status(
    client: AsyncTestClient[Litestar],
) -> None:
    patient = uuid.uuid4()
    route = "/api/v1/patients/{patient_id}"
    before = (await client.get("/metrics")).text
    count = "interlude_http_request_duration_seconds_count"
    start = _value(before, count, method="GET", route=route, status="401") or 0.0
    # Refused by the access-control middleware (an exception, not a handler's response).
    refused = await client.get(f"/api/v1/patients/{patient}")
    assert refused.status_code == 401
    text = (await client.get("/metrics")).text
    assert _value(text, count, method="GET", route=route, status="401") == start + 1
    assert str(patient) not in text


@post("/api/v1/responses", opt={"public": True}, status_code=200)
async def _stand_in_submission(data: JSONBody[dict[str, str]]) -> dict[str, str]:
    if "instrumentId" not in data:
        raise InvalidInput("instrumentId is required")
    return {"status": "accepted"}


async def test_submission_outcomes_are_counted(settings: Settings) -> None:
    # The real submission route when it is registered; until then a stand-in at its path (what
    # is counted is the route template and the status).
    real = "/api/v1/responses" in create_app(settings).route_handler_method_map
    app = create_app(settings, extra_route_handlers=[] if real else [_stand_in_submission])
    name = "interlude_submissions_total"
    route = "/api/v1/responses"
    async with AsyncTestClient(app=app) as client:
        before = (await client.get("/metrics")).text
        rejected = _value(before, name, route=route, outcome="rejected") or 0.0
        accepted = _value(before, name, route=route, outcome="accepted") or 0.0
        assert (await client.post(route, json={})).status_code in (401, 422)
        if not real:
            assert (await client.post(route, json={"instrumentId": "PHQ-9"})).status_code == 200
        after = (await client.get("/metrics")).text
    assert _value(after, name, route=route, outcome="rejected") == rejected + 1
    now_accepted = _value(after, name, route=route, outcome="accepted") or 0.0
    assert now_accepted == accepted + (0 if real else 1)


async def test_count_alert_by_kind_and_severity(client: AsyncTestClient[Litestar]) -> None:
    name = "interlude_alerts_total"
    before = _value((await client.get("/metrics")).text, name, kind="rebound", severity="high")
    metrics.count_alert("rebound", "high")
    metrics.count_alert("rebound", "high")
    after = _value((await client.get("/metrics")).text, name, kind="rebound", severity="high")
    assert after == (before or 0.0) + 2


async def test_registered_probe_is_evaluated_at_each_scrape(
    client: AsyncTestClient[Litestar],
) -> None:
    values: list[float | None] = [12.5, None]

    async def probe(connection: AsyncConnection, _now: object) -> float | None:
        assert isinstance(connection, AsyncConnection)
        return values.pop(0)

    async def broken(connection: AsyncConnection, _now: object) -> float | None:
        await connection.execute(text("SELECT * FROM no_such_table"))
        return 1.0

    metrics.register_probe("interlude_test_probe_seconds", "a probe for this test", probe)
    metrics.register_probe("interlude_test_broken_probe", "a probe that fails", broken)
    try:
        first = (await client.get("/metrics")).text
        second = (await client.get("/metrics")).text
    finally:
        metrics.unregister_probe("interlude_test_probe_seconds")
        metrics.unregister_probe("interlude_test_broken_probe")
    assert _value(first, "interlude_test_probe_seconds") == 12.5
    assert math.isnan(_value(second, "interlude_test_probe_seconds") or 0.0)  # None: no data
    assert math.isnan(_value(first, "interlude_test_broken_probe") or 0.0)
    assert _value(first, "interlude_metrics_database_up") == 1.0
    third = (await client.get("/metrics")).text
    assert _value(third, "interlude_test_probe_seconds") is None


async def test_scrape_answers_when_the_database_is_gone(
    client: AsyncTestClient[Litestar], make_settings: SettingsFactory
) -> None:
    runtime = client.app.state.runtime
    healthy = runtime.engine
    runtime.engine = create_engine(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/nowhere"))
    try:
        response = await client.get("/metrics")
    finally:
        await runtime.engine.dispose()
        runtime.engine = healthy
    assert response.status_code == 200
    assert _value(response.text, "interlude_metrics_database_up") == 0.0
