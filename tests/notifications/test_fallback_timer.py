"""Channel fallback on both databases: a check-in's push nobody confirmed is re-sent once, then
texted (if the patient opted in), then handed to clinic staff as a task, all before its window
closes; a receipt or an answer stops it; each step happens once however often the timer runs,
on a fresh timer (a restarted instance) or on two instances at once (PostgreSQL)."""

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.engine import create_engine
from backend.db.models.treatment import CheckIn
from backend.domain.check_ins.delivery import CheckInTimers
from backend.domain.fallback import repository as fallback
from backend.domain.fallback.plan import step_times
from backend.domain.fallback.timer import FallbackTimer
from backend.domain.preferences import repository as preferences
from backend.domain.receipts import repository as receipts
from notifications.templates import MessageKind
from tests.conftest import SettingsFactory
from tests.sessions.world import OUTBOX, World

CHECK_INS = CheckIn.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await World(engine).setup()


async def _first_check_in_sent(world: World, patient: uuid.UUID) -> Any:
    """Record a session, move to the first check-in's due time and hand it to the outbox."""
    await world.record(patient)
    rows = [r for r in await world.rows(patient) if r.status == "pending"]
    first = min(rows, key=lambda r: r.due_at)
    world.clock._now = max(world.now, first.due_at)
    await CheckInTimers(world.engine, instance="check-ins", clock=world.clock).drain()
    async with world.engine.connect() as connection:
        return (await connection.execute(select(CHECK_INS).where(CHECK_INS.c.id == first.id))).one()


async def _keys(world: World, check_in_id: uuid.UUID) -> Counter[str]:
    async with world.engine.connect() as connection:
        rows = await connection.execute(
            select(OUTBOX.c.idempotency_key, OUTBOX.c.kind).where(
                OUTBOX.c.check_in_id == str(check_in_id)
            )
        )
        return Counter(kind for _, kind in rows.all())


async def _staff_messages(world: World) -> list[Any]:
    async with world.engine.connect() as connection:
        rows = await connection.execute(
            select(OUTBOX).where(OUTBOX.c.kind == MessageKind.PATIENT_UNREACHED.value)
        )
        return list(rows.all())


async def _watch(world: World, check_in_id: uuid.UUID) -> Any:
    async with world.engine.connect() as connection:
        return (
            await connection.execute(
                select(fallback.TABLE).where(fallback.TABLE.c.check_in_id == check_in_id)
            )
        ).one()


async def _tasks(world: World) -> list[Any]:
    async with world.engine.connect() as connection:
        return list((await connection.execute(select(fallback.TASKS))).all())


def _timer(world: World, instance: str = "node-a") -> FallbackTimer:
    # A new timer each time: nothing is kept in memory between passes (as after a restart).
    return FallbackTimer(world.engine, instance=instance, clock=world.clock)


async def test_unconfirmed_push_is_resent_then_texted_then_given_to_staff_before_close(
    world: World,
) -> None:
    patient = await world.patient(devices=("android", "ios"))
    async with world.engine.begin() as connection:
        await preferences.save_patient_channels(
            connection, patient, ["push", "sms"], by=world.staff_id, now=world.now
        )
    check_in = await _first_check_in_sent(world, patient)
    watch = await _watch(world, check_in.id)
    assert watch.status == "watching"
    resend, sms, task = step_times(watch.first_sent_at, check_in.closes_at)
    assert task < check_in.closes_at
    due = MessageKind.CHECK_IN_DUE.value
    reminder = MessageKind.CHECK_IN_REMINDER.value
    assert (await _keys(world, check_in.id))[due] == 2  # one push per device

    await _timer(world).drain()  # nothing is due yet
    assert (await _keys(world, check_in.id))[due] == 2

    world.clock._now = resend
    for _ in range(2):
        await _timer(world).drain()
    assert (await _keys(world, check_in.id))[due] == 4  # re-sent once, to each device

    world.clock._now = sms
    for _ in range(2):
        await _timer(world).drain()
    async with world.engine.connect() as connection:
        texts = (
            await connection.execute(
                select(OUTBOX).where(
                    OUTBOX.c.check_in_id == str(check_in.id), OUTBOX.c.channel == "sms"
                )
            )
        ).all()
    assert len(texts) == 1
    assert texts[0].recipient_type == "patient_phone"
    assert texts[0].kind == reminder
    assert texts[0].expires_at == check_in.closes_at

    world.clock._now = task
    for _ in range(2):
        await _timer(world).drain()
    (staff_task,) = await _tasks(world)
    assert staff_task.check_in_id == check_in.id
    assert staff_task.patient_id == patient
    (to_staff,) = await _staff_messages(world)  # the clinic's one clinician
    assert to_staff.recipient_id == str(world.staff_id)
    assert to_staff.task_id == str(staff_task.id)
    assert (await _watch(world, check_in.id)).status == "finished"
    assert world.now < check_in.closes_at


async def test_a_receipt_stops_the_fallback(world: World) -> None:
    patient = await world.patient()
    check_in = await _first_check_in_sent(world, patient)
    async with world.engine.connect() as connection:
        message_id = await connection.scalar(
            select(OUTBOX.c.id).where(OUTBOX.c.check_in_id == str(check_in.id))
        )
    assert isinstance(message_id, uuid.UUID)
    async with world.engine.begin() as connection:
        await receipts.record(
            connection,
            message_id=message_id,
            events=["received"],
            patient_id=patient,
            check_in_id=str(check_in.id),
            now=world.now,
        )
    world.clock._now = check_in.closes_at - timedelta(minutes=1)
    await _timer(world).drain()
    watch = await _watch(world, check_in.id)
    assert (watch.status, watch.outcome) == ("confirmed", "receipt")
    assert (await _keys(world, check_in.id))[MessageKind.CHECK_IN_DUE.value] == 1
    assert not await _tasks(world)


async def test_without_sms_opt_in_staff_follow_up_and_an_answer_stops_it(world: World) -> None:
    answered_patient = await world.patient()
    silent_patient = await world.patient()
    answered = await _first_check_in_sent(world, answered_patient)
    silent = await _first_check_in_sent(world, silent_patient)
    async with world.engine.begin() as connection:
        await connection.execute(
            update(CHECK_INS)
            .where(CHECK_INS.c.id == answered.id)
            .values(status="answered", answered_at=world.now)
        )
    last = max(r.closes_at for r in (answered, silent)) - timedelta(minutes=31)
    steps: list[datetime] = []
    for c in (answered, silent):
        steps += step_times((await _watch(world, c.id)).first_sent_at, c.closes_at)
    steps.sort()
    for at in [*steps, last]:
        world.clock._now = max(world.now, at)
        await _timer(world).drain()
    assert (await _watch(world, answered.id)).status == "closed"
    (task,) = await _tasks(world)
    assert task.check_in_id == silent.id
    async with world.engine.connect() as connection:
        texts = await connection.scalar(
            select(OUTBOX.c.id).where(OUTBOX.c.channel == "sms").limit(1)
        )
    assert texts is None  # nobody opted in to SMS


async def test_a_patient_who_chose_sms_only_is_texted_at_once(world: World) -> None:
    patient = await world.patient()
    async with world.engine.begin() as connection:
        await preferences.save_patient_channels(
            connection, patient, ["sms"], by=world.staff_id, now=world.now
        )
    check_in = await _first_check_in_sent(world, patient)
    await _timer(world).drain()
    async with world.engine.connect() as connection:
        texts = (
            await connection.execute(
                select(OUTBOX.c.id).where(
                    OUTBOX.c.check_in_id == str(check_in.id), OUTBOX.c.channel == "sms"
                )
            )
        ).all()
    # The push was written before anything read the preference; the gate drops it at send time
    # and hurries the watch, so the text goes on the next pass, not after the re-send delay.
    assert texts == []
    async with world.engine.begin() as connection:
        await fallback.hurry(connection, [str(check_in.id)], now=world.now)
    await _timer(world).drain()
    async with world.engine.connect() as connection:
        count = len(
            (
                await connection.execute(
                    select(OUTBOX.c.id).where(
                        OUTBOX.c.check_in_id == str(check_in.id), OUTBOX.c.channel == "sms"
                    )
                )
            ).all()
        )
    assert count == 1


@pytest.mark.postgres
async def test_two_instances_take_each_step_exactly_once(
    make_settings: SettingsFactory, postgres_database_url: str
) -> None:
    engine_a = create_engine(make_settings(postgres_database_url))
    engine_b = create_engine(make_settings(postgres_database_url))
    try:
        world = await World(engine_a).setup()
        patients = [await world.patient() for _ in range(12)]
        check_ins = [await _first_check_in_sent(world, p) for p in patients]
        ends: list[datetime] = []
        for c in check_ins:
            ends += step_times((await _watch(world, c.id)).first_sent_at, c.closes_at)
        a = FallbackTimer(engine_a, instance="node-a", clock=world.clock, batch_size=3)
        b = FallbackTimer(engine_b, instance="node-b", clock=world.clock, batch_size=3)
        first, *rest = sorted(set(ends))
        world.clock._now = max(world.now, first)
        # node-a is mid-pass (its claim not committed): node-b skips those rows, takes the rest.
        async with engine_a.connect() as held:
            transaction = await held.begin()
            mid_pass = await fallback.claim_due(
                held, instance="node-a", now=world.now, lease=timedelta(seconds=60), limit=5
            )
            assert len(mid_pass) == 5
            assert await b.drain() == len(check_ins) - 5
            await transaction.rollback()  # node-a dies before committing: nothing happened
        await a.drain()
        for at in rest:
            world.clock._now = max(world.now, at)
            await asyncio.gather(a.drain(), b.drain(), a.drain(), b.drain())
        # Each watch was claimed once per step it took (re-send, task): no double claims.
        assert a.stats.claimed + b.stats.claimed == 2 * len(check_ins)
        tasks = await _tasks(world)
        assert sorted(t.check_in_id for t in tasks) == sorted(c.id for c in check_ins)
        async with engine_a.connect() as connection:
            keys = [k for (k,) in (await connection.execute(select(OUTBOX.c.idempotency_key)))]
        # One device each: one re-send per check-in; no text (nobody opted in); one task each.
        assert sum(":resend:" in k for k in keys) == len(check_ins)
        assert a.stats.resent + b.stats.resent == len(check_ins)
        assert a.stats.tasks + b.stats.tasks == len(check_ins)
        assert len(await _staff_messages(world)) == len(check_ins)
    finally:
        await engine_a.dispose()
        await engine_b.dispose()


async def _sms(world: World, check_in_id: uuid.UUID) -> list[Any]:
    async with world.engine.connect() as connection:
        rows = await connection.execute(
            select(OUTBOX).where(
                OUTBOX.c.check_in_id == str(check_in_id), OUTBOX.c.channel == "sms"
            )
        )
        return list(rows.all())


async def test_a_patient_without_a_device_who_opted_in_is_texted_at_once(world: World) -> None:
    # No push can go, so no push starts the watch: the hand-over itself must, or nobody is told.
    patient = await world.patient(devices=())
    async with world.engine.begin() as connection:
        await preferences.save_patient_channels(
            connection, patient, ["push", "sms"], by=world.staff_id, now=world.now
        )
    check_in = await _first_check_in_sent(world, patient)
    assert check_in.status == "sent"
    assert check_in.devices_notified == 0
    assert (await _keys(world, check_in.id))[MessageKind.CHECK_IN_DUE.value] == 0
    assert (await _watch(world, check_in.id)).status == "watching"

    for _ in range(2):
        await _timer(world).drain()  # same instant as the hand-over
    (text,) = await _sms(world, check_in.id)
    assert text.recipient_type == "patient_phone"
    assert text.expires_at == check_in.closes_at

    *_, task_at = step_times(world.now, check_in.closes_at)
    world.clock._now = task_at
    for _ in range(2):
        await _timer(world).drain()
    (staff_task,) = await _tasks(world)
    assert staff_task.check_in_id == check_in.id
    assert len(await _sms(world, check_in.id)) == 1
    assert (await _watch(world, check_in.id)).status == "finished"
    assert world.now < check_in.closes_at


async def test_a_patient_without_a_device_or_sms_gets_a_staff_task_before_close(
    world: World,
) -> None:
    patient = await world.patient(devices=())
    check_in = await _first_check_in_sent(world, patient)
    assert (await _watch(world, check_in.id)).status == "watching"
    await _timer(world).drain()
    assert not await _tasks(world)  # the patient may still open the app: staff wait their turn

    *_, task_at = step_times(world.now, check_in.closes_at)
    world.clock._now = task_at
    for _ in range(2):
        await _timer(world).drain()
    (staff_task,) = await _tasks(world)
    assert (staff_task.check_in_id, staff_task.patient_id) == (check_in.id, patient)
    (to_staff,) = await _staff_messages(world)
    assert to_staff.task_id == str(staff_task.id)
    assert not await _sms(world, check_in.id)
    assert (await _watch(world, check_in.id)).status == "finished"
    assert world.now < check_in.closes_at
