"""The alert engine's missed check-in reminder goes out through the outbox (clinical-spec §4.2),
in the transaction that records it, once per device, with ids only, and never twice with the
check-in timers' own first reminder."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.domain.alerts import store
from backend.domain.alerts.evaluation import evaluate_patient
from backend.domain.check_ins.delivery import CheckInTimers
from notifications.templates import MessageKind
from tests.sessions.world import OUTBOX, World


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await World(engine).setup()


async def _evaluate(world: World, patient_id: uuid.UUID, *, commit: bool = True) -> None:
    async with world.sessions() as session:
        await evaluate_patient(
            session,
            world.keyring,
            patient_id=patient_id,
            clinic_id=world.clinic_id,
            now=world.now,
        )
        if commit:
            await session.commit()
        else:
            await session.rollback()


async def _reminders(world: World, check_in_id: object) -> list[Any]:
    async with world.engine.connect() as connection:
        rows = await connection.execute(
            select(OUTBOX).where(
                OUTBOX.c.kind == MessageKind.CHECK_IN_REMINDER,
                OUTBOX.c.check_in_id == str(check_in_id),
            )
        )
        return list(rows.all())


async def _reminder_occurrences(world: World, patient_id: uuid.UUID, check_in_id: object) -> int:
    o = store.OCCURRENCES.c
    async with world.engine.connect() as connection:
        rows = await connection.execute(
            select(o.id).where(
                o.patient_id == patient_id,
                o.occurrence_key == f"{patient_id}:CHECK_IN_REMINDER:{check_in_id}",
            )
        )
        return len(rows.all())


async def _sent_check_in(world: World, patient_id: uuid.UUID, step: str) -> Any:
    """Record a session, then let the check-in timers issue the check-in at its due time."""
    await world.record(patient_id)
    row = {r.step: r for r in await world.rows(patient_id)}[step]
    world.clock._now = row.due_at
    await CheckInTimers(world.engine, instance="test-1", clock=world.clock).drain()
    return row


async def test_the_reminder_is_pushed_once_per_device_with_ids_only(world: World) -> None:
    patient = await world.patient(devices=("android", "ios"))
    day7 = await _sent_check_in(world, patient, "day-7")
    # A week after the session is not "recent": the reminder comes 12 h after the due time.
    world.clock._now = day7.due_at + timedelta(hours=11, minutes=59)
    await _evaluate(world, patient)
    assert await _reminders(world, day7.id) == []

    world.clock._now = day7.due_at + timedelta(hours=12)
    await _evaluate(world, patient, commit=False)  # rolled back: no occurrence, no message
    assert await _reminders(world, day7.id) == []
    assert await _reminder_occurrences(world, patient, day7.id) == 0

    await _evaluate(world, patient)
    messages = await _reminders(world, day7.id)
    assert len(messages) == 2
    assert {m.channel for m in messages} == {"fcm", "apns"}
    assert {m.recipient_type for m in messages} == {"device"}
    assert {m.collapse_key for m in messages} == {f"check-in:{day7.id}"}
    assert all(m.expires_at == day7.closes_at for m in messages)
    # Nothing but ids and routing: no answers, names or scores can ride along.
    assert all(m.alert_id is None and m.clinic_id == world.clinic_id for m in messages)

    # Evaluated again, and the check-in timers' own first reminder: still one per device.
    await _evaluate(world, patient)
    world.clock._now = datetime.fromisoformat(day7.reminders_at[0])
    await CheckInTimers(world.engine, instance="test-1", clock=world.clock).drain()
    again = await _reminders(world, day7.id)
    assert sorted(m.idempotency_key for m in again) == sorted(m.idempotency_key for m in messages)
    assert await _reminder_occurrences(world, patient, day7.id) == 1


async def test_a_check_in_whose_window_closed_is_not_pushed(world: World) -> None:
    patient = await world.patient()
    day3 = await _sent_check_in(world, patient, "day-3")
    # Nobody looked until after the window closed: the reminder is recorded, not sent.
    world.clock._now = day3.closes_at + timedelta(minutes=1)
    await _evaluate(world, patient)
    assert await _reminder_occurrences(world, patient, day3.id) == 1
    assert await _reminders(world, day3.id) == []
