"""A session recorded at the moment the patient withdraws monitoring (both databases).

Both hold the patient's row, so one waits for the other, whichever comes first. Before they did,
on PostgreSQL neither waited: a session recorded while the withdrawal was open planned check-ins
for a patient who had just withdrawn, and a withdrawal made while a session was being recorded
could not see (so could not cancel) that session's new check-ins. Either way the patient was left
with check-ins open after withdrawing."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.check_ins import repository
from backend.domain.sessions import service
from backend.domain.sessions.schemas import SessionInput
from backend.identity import consent
from backend.identity.schemas import ConsentChange
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
from tests.races import race

OPEN = {"pending", "merged", "sent", "claimed"}
Step = Callable[[AsyncSession], Awaitable[None]]


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    world = await build_world(api, clock)
    await runtime_of(api).timers.shutdown()  # nothing is claimed behind the test's back
    return world


def _withdrawal(runtime: Runtime, people: World, patient_id: uuid.UUID) -> Step:
    admin = people.staff["admin_a"].principal()

    async def withdraw(db_session: AsyncSession) -> None:
        saved = await consent.change_consent(
            db_session,
            runtime,
            admin,
            patient_id,
            ConsentChange(monitoring_consent=False, research_consent=False),
            if_match=None,
        )
        assert saved.status == "withdrawn"

    return withdraw


def _recording(runtime: Runtime, people: World, clock: MovableClock, patient_id: uuid.UUID) -> Step:
    clinician = people.staff["clinician_a"].id

    async def record(db_session: AsyncSession) -> None:
        await service.record_session(
            db_session,
            runtime.keyring,
            patient_id=patient_id,
            data=SessionInput(
                modality="n2o",
                planned_start=clock.now() + timedelta(days=2),
                minutes=60,
                n2o_concentration_percent=50,
            ),
            staff_id=clinician,
            now=clock.now(),
        )

    return record


async def _statuses(runtime: Runtime, patient_id: uuid.UUID) -> list[str]:
    async with runtime.require_engine().connect() as connection:
        return [r.status for r in await repository.rows_for_patient(connection, patient_id)]


async def test_a_session_recorded_during_a_withdrawal_plans_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    runtime = runtime_of(api)
    patient_id = uuid.UUID(str(people.patients["patient_a"].id))
    await race(
        runtime,
        _withdrawal(runtime, people, patient_id),
        _recording(runtime, people, clock, patient_id),
    )
    async with runtime.require_sessionmaker()() as db_session:
        assert len(await service.list_sessions(db_session, patient_id)) == 1  # still recorded
    assert not set(await _statuses(runtime, patient_id)) & OPEN


async def test_a_withdrawal_during_a_recording_cancels_its_check_ins(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    runtime = runtime_of(api)
    patient_id = uuid.UUID(str(people.patients["patient_a"].id))
    await race(
        runtime,
        _recording(runtime, people, clock, patient_id),
        _withdrawal(runtime, people, patient_id),
    )
    statuses = await _statuses(runtime, patient_id)
    assert statuses  # the session's ladder was planned, then cancelled by the withdrawal
    assert set(statuses) == {"cancelled"}
