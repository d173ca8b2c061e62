"""A re-plan in a request and the check-in timer side by side, interleaved the way that
deadlocked on PostgreSQL (both databases).

The timer claims a due check-in and holds it to the end of its pass. A request that re-plans the
patient's check-ins (a new time zone, a moved session) locks the patient's or the session's row,
then waits for that check-in. The timer's next write to the check-in re-checks its foreign keys
(PostgreSQL does so for a row its own transaction wrote), which needs a KEY SHARE lock on the
patient's and the session's rows. Under FOR UPDATE that waited for the request: a deadlock, and
one of the two was aborted (a 503 for the patient). Under FOR NO KEY UPDATE both complete, the
request after the timer.

Erasure is the harder case: nulling the patient's blind indexes changes columns of a unique key,
which takes the full FOR UPDATE lock on the patient's row whatever the request asks for. So
erasure must not wait for a check-in a timer holds at all: it skips it (PostgreSQL only; on
SQLite a pass and a request never overlap), and later passes cancel what is left to go out."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import time, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.check_ins import repository
from backend.domain.check_ins.quiet_hours import QuietHours
from backend.domain.sessions import service
from backend.domain.sessions.schemas import SessionReschedule
from backend.state import Runtime
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock
from tests.races import until_blocked

Request = Callable[[AsyncSession], Awaitable[Any]]


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


async def _planned_session(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> str:
    """A session in 12 hours: its pre-session check-in is due now, the later ones are not."""
    patient = people.patients["patient_a"]
    created = await api.post(
        f"/api/v1/patients/{patient.id}/sessions",
        headers=people.staff["clinician_a"].headers,
        json={
            "modality": "n2o",
            "planned_start": (clock.now() + timedelta(hours=12)).isoformat(),
            "minutes": 60,
            "n2o_concentration_percent": 50,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _beside_the_timer(runtime: Runtime, clock: MovableClock, request: Request) -> Any:
    """The timer's pass (claim, then mark sent) with the request started in between."""
    now = clock.now()
    sessions = runtime.require_sessionmaker()

    async def run_request() -> Any:
        async with sessions() as db_session, db_session.begin():
            return await request(db_session)

    async with sessions() as timer, timer.begin():
        connection = await timer.connection()
        claimed = await repository.claim_due(
            connection, instance="timer", now=now, lease=timedelta(minutes=1), limit=10
        )
        assert len(claimed) == 1  # the pre-session check-in
        task = asyncio.create_task(run_request())
        await until_blocked(runtime.require_engine())
        assert not task.done()  # it waits for the claimed check-in
        sent = [(row.id, 0, None) for row in claimed]
        assert await repository.mark_sent(connection, sent, instance="timer", now=now) == 1
    return await asyncio.wait_for(task, timeout=30)


async def test_a_new_time_zone_beside_the_timer_completes_after_it(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    runtime = runtime_of(api)
    await runtime.timers.shutdown()  # this test is the timer
    await _planned_session(api, people, clock)
    patient_id = uuid.UUID(str(people.patients["patient_a"].id))

    async def change(db_session: AsyncSession) -> int:
        _, _, changed = await service.change_patient_schedule(
            db_session,
            patient_id=patient_id,
            time_zone="America/New_York",
            quiet_hours=QuietHours(start=time(22), end=time(7)),
            now=clock.now(),
        )
        return changed

    assert await _beside_the_timer(runtime, clock, change) > 0
    async with runtime.require_sessionmaker()() as db_session:
        schedule = await service.patient_schedule(db_session, patient_id)
    assert schedule.time_zone == "America/New_York"


async def test_a_moved_session_beside_the_timer_completes_after_it(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    runtime = runtime_of(api)
    await runtime.timers.shutdown()
    session_id = uuid.UUID(await _planned_session(api, people, clock))
    patient_id = uuid.UUID(str(people.patients["patient_a"].id))
    later = clock.now() + timedelta(hours=14)

    async def move(db_session: AsyncSession) -> Any:
        return await service.reschedule_session(
            db_session,
            patient_id=patient_id,
            session_id=session_id,
            data=SessionReschedule(planned_start=later),
            now=clock.now(),
        )

    moved = await _beside_the_timer(runtime, clock, move)
    assert moved.planned_start_at == later


async def test_an_erasure_beside_the_timer_does_not_wait_for_its_check_in(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    runtime = runtime_of(api)
    engine = runtime.require_engine()
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: a timer pass and a request never overlap")
    await runtime.timers.shutdown()
    await _planned_session(api, people, clock)
    patient_id = uuid.UUID(str(people.patients["patient_a"].id))
    now = clock.now()
    async with runtime.require_sessionmaker()() as timer:
        connection = await timer.connection()
        claimed = await repository.claim_due(
            connection, instance="timer", now=now, lease=timedelta(minutes=1), limit=10
        )
        assert len(claimed) == 1
        # Before the fix the erasure waited for the claimed row while holding the patient's row,
        # and the timer's next write (below) waited for the patient's row: a deadlock.
        erasure = asyncio.create_task(
            api.delete(f"/api/v1/patients/{patient_id}", headers=people.staff["admin_a"].headers)
        )
        await asyncio.wait({erasure}, timeout=15)
        if not erasure.done():
            await timer.rollback()  # release it, so the test fails instead of hanging
            await asyncio.wait_for(erasure, timeout=30)
            pytest.fail("the erasure waited for the check-in the timer holds")
        erased = erasure.result()
        assert erased.status_code == 204, erased.text
        sent = [(r.id, 1, repository.next_reminder(r.reminders_at, now)) for r in claimed]
        assert await repository.mark_sent(connection, sent, instance="timer", now=now) == 1
        await timer.commit()

    async with engine.connect() as connection:
        rows = {r.id: r for r in await repository.rows_for_patient(connection, patient_id)}
    held = rows.pop(claimed[0].id)
    # The timer's, as when erasure waited for it; its reminders are cancelled by the pass that
    # claims them (tests/check_ins/test_delivery.py, monitoring stopped).
    assert held.status == "sent"
    assert rows
    assert {r.status for r in rows.values()} == {"cancelled"}
