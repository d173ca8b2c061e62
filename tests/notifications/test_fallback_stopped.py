"""Channel fallback for a patient whose monitoring stopped (monitoring consent withdrawn, or
erased) while a check-in's watch was open: the watch closes as ``monitoring_stopped`` and no
re-sent push, text or staff task is ever made for them, even when the check-in itself was left
open (a withdrawal or an erasure that skipped the row a timer pass held)."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.models.patient import Patient
from backend.db.models.treatment import CheckIn
from backend.domain.check_ins.delivery import CheckInTimers
from backend.domain.fallback import repository as fallback
from backend.domain.fallback.plan import (
    MONITORING_STOPPED,
    Finish,
    Reach,
    decide,
    step_times,
)
from backend.domain.fallback.timer import FallbackTimer
from backend.domain.preferences import repository as preferences
from tests.sessions.world import OUTBOX, World

CHECK_INS = CheckIn.__table__  # type: ignore[attr-defined]
PATIENTS = Patient.__table__  # type: ignore[attr-defined]
SENT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
STOPPED = Finish(status="closed", outcome=MONITORING_STOPPED)


@given(
    minutes=st.integers(min_value=0, max_value=24 * 60),
    steps_done=st.integers(min_value=0, max_value=3),
    status=st.sampled_from(["pending", "claimed", "sent", "answered", "cancelled", None]),
    confirmed=st.booleans(),
    push=st.booleans(),
    sms=st.booleans(),
)
def test_a_stopped_patients_watch_closes_whatever_else_holds(
    minutes: int, steps_done: int, status: str | None, confirmed: bool, push: bool, sms: bool
) -> None:
    decision = decide(
        steps_done=steps_done,
        first_sent=SENT,
        closes_at=SENT + timedelta(hours=12),
        now=SENT + timedelta(minutes=minutes),
        check_in_status=status,
        confirmed=confirmed,
        reach=Reach(push=push, sms=sms),
        monitoring_stopped=True,
    )
    assert decision == STOPPED


def test_a_due_step_is_not_taken_once_monitoring_stopped() -> None:
    resend, sms, task = step_times(SENT, SENT + timedelta(hours=12))
    for now, done in ((resend, 0), (sms, 1), (task, 2)):
        arguments: dict[str, Any] = {
            "steps_done": done,
            "first_sent": SENT,
            "closes_at": SENT + timedelta(hours=12),
            "now": now,
            "check_in_status": "sent",
            "confirmed": False,
            "reach": Reach(push=True, sms=True),
        }
        assert not isinstance(decide(**arguments), Finish)  # due: it would act
        assert decide(**arguments, monitoring_stopped=True) == STOPPED


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await World(engine).setup()


async def _first_check_in_sent(world: World, patient: uuid.UUID) -> Any:
    await world.record(patient)
    rows = [r for r in await world.rows(patient) if r.status == "pending"]
    first = min(rows, key=lambda r: r.due_at)
    world.clock._now = max(world.now, first.due_at)
    await CheckInTimers(world.engine, instance="check-ins", clock=world.clock).drain()
    async with world.engine.connect() as connection:
        return (await connection.execute(select(CHECK_INS).where(CHECK_INS.c.id == first.id))).one()


async def _messages(world: World, check_in_id: uuid.UUID) -> int:
    async with world.engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(OUTBOX).where(OUTBOX.c.check_in_id == str(check_in_id))
        )
    return int(count or 0)


async def _watch(world: World, check_in_id: uuid.UUID) -> Any:
    async with world.engine.connect() as connection:
        return (
            await connection.execute(
                select(fallback.TABLE).where(fallback.TABLE.c.check_in_id == check_in_id)
            )
        ).one()


@pytest.mark.parametrize("status", ["withdrawn", "erased"])
async def test_the_timer_closes_the_watch_of_a_stopped_patient_and_sends_nothing(
    world: World, status: str
) -> None:
    stopped, reference = await world.patient(), await world.patient()
    for patient in (stopped, reference):
        async with world.engine.begin() as connection:
            await preferences.save_patient_channels(
                connection, patient, ["push", "sms"], by=world.staff_id, now=world.now
            )
    held = await _first_check_in_sent(world, stopped)
    kept = await _first_check_in_sent(world, reference)
    assert held.status == kept.status == "sent"
    pushed = await _messages(world, held.id)
    # Monitoring stops, but this check-in was left open (a timer pass held it meanwhile).
    async with world.engine.begin() as connection:
        await connection.execute(
            update(PATIENTS).where(PATIENTS.c.id == stopped).values(status=status)
        )
    steps = step_times((await _watch(world, held.id)).first_sent_at, held.closes_at)
    for at in steps:
        world.clock._now = max(world.now, at)
        await FallbackTimer(world.engine, instance="node-a", clock=world.clock).drain()

    watch = await _watch(world, held.id)
    assert (watch.status, watch.outcome) == ("closed", MONITORING_STOPPED)
    assert await _messages(world, held.id) == pushed  # no re-send, no text
    async with world.engine.connect() as connection:
        tasks = list((await connection.execute(select(fallback.TASKS))).all())
    assert {t.patient_id for t in tasks} <= {reference}
    # The other patient's fallback went on as before.
    assert await _messages(world, kept.id) > pushed
    assert (await _watch(world, kept.id)).outcome != MONITORING_STOPPED
