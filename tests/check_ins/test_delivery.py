"""The check-in timers on both databases: each due check-in reaches the outbox once per device,
reminders while unanswered, missed when the window closes, and catch-up after downtime."""

import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.models.device import Device
from backend.db.models.patient import Patient
from backend.db.models.treatment import CheckIn
from backend.domain.check_ins.delivery import CheckInTimers
from backend.domain.check_ins.recipients import DeviceResolver
from backend.domain.outbox.recipients import RecipientUnavailable
from notifications.templates import MessageKind
from tests.sessions.world import OUTBOX, START, World

CHECK_INS = CheckIn.__table__  # type: ignore[attr-defined]
PATIENTS = Patient.__table__  # type: ignore[attr-defined]
DEVICES = Device.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await World(engine).setup()


def _timers(world: World, batch_size: int = 50) -> CheckInTimers:
    return CheckInTimers(world.engine, instance="test-1", clock=world.clock, batch_size=batch_size)


async def _messages(world: World) -> list[tuple[str, str, str]]:
    async with world.engine.connect() as connection:
        rows = await connection.execute(
            select(OUTBOX.c.kind, OUTBOX.c.check_in_id, OUTBOX.c.recipient_id)
        )
        return [(r.kind, r.check_in_id, r.recipient_id) for r in rows.all()]


async def test_due_check_ins_reach_the_outbox_once_per_device(world: World) -> None:
    patient = await world.patient(devices=("android", "ios"))
    await world.record(patient)
    timers = _timers(world)
    # Visit every instant where something is due, reminded or closes (and a minute after),
    # running the timers twice at each.
    planned = await world.rows(patient)
    instants = sorted(
        {r.due_at for r in planned}
        | {r.closes_at for r in planned}
        | {datetime.fromisoformat(t) for r in planned for t in r.reminders_at}
    )
    for instant in instants:
        for at in (instant, instant + timedelta(minutes=1)):
            world.clock._now = max(world.now, at)
            await timers.drain()
            await timers.drain()
    rows = await world.rows(patient)
    sent = [r for r in rows if r.sent_at is not None]
    assert sent, "nothing was sent"
    due = Counter(
        check_in for kind, check_in, _ in await _messages(world) if kind == MessageKind.CHECK_IN_DUE
    )
    assert due == Counter({str(r.id): 2 for r in sent})
    # Nobody answered: every issued check-in closed as missed, and merged ones were never sent.
    assert {r.status for r in rows} <= {"missed", "merged"}
    assert all(r.sent_at is None for r in rows if r.status == "merged")
    assert all(r.sent_at >= r.due_at for r in sent)
    assert all(r.sent_at < r.closes_at for r in sent)


async def test_reminders_go_out_while_unanswered_and_stop_when_answered(world: World) -> None:
    patient = await world.patient()
    await world.record(patient)
    timers = _timers(world)
    rows = {r.step: r for r in await world.rows(patient)}
    day3, day7 = rows["day-3"], rows["day-7"]
    assert day3.reminders_at
    assert day7.reminders_at
    world.clock._now = day3.due_at
    await timers.drain()
    # The stored reminder time (12 h after due, moved out of quiet hours).
    world.clock._now = datetime.fromisoformat(day3.reminders_at[0])
    await timers.drain()
    await timers.drain()
    messages = await _messages(world)
    assert Counter(k for k, c, _ in messages if c == str(day3.id)) == {
        MessageKind.CHECK_IN_DUE: 1,
        MessageKind.CHECK_IN_REMINDER: 1,
    }
    # Day 7 answered before its reminder: no reminder.
    world.clock._now = day7.due_at
    await timers.drain()
    async with world.engine.begin() as connection:
        await connection.execute(
            update(CHECK_INS).where(CHECK_INS.c.id == day7.id).values(status="answered")
        )
    world.clock._now = datetime.fromisoformat(day7.reminders_at[-1])
    await timers.drain()
    messages = await _messages(world)
    assert Counter(k for k, c, _ in messages if c == str(day7.id)) == {MessageKind.CHECK_IN_DUE: 1}


async def test_after_downtime_open_windows_are_sent_and_closed_ones_missed(world: World) -> None:
    patient = await world.patient()
    await world.record(patient)
    rows = {r.step: r for r in await world.rows(patient)}
    two_h, day1 = rows["2h"], rows["24h"]
    # Down from before the session until +24 h's window is open but +2 h's has closed.
    world.clock._now = day1.due_at + timedelta(hours=1)
    assert two_h.closes_at < world.now < day1.closes_at
    stats = await _timers(world).drain()
    after = {r.step: r for r in await world.rows(patient)}
    assert after["2h"].status == "missed"
    assert after["2h"].sent_at is None
    assert after["24h"].status == "sent"
    sent_ids = {c for k, c, _ in await _messages(world) if k == MessageKind.CHECK_IN_DUE}
    assert str(two_h.id) not in sent_ids
    assert str(day1.id) in sent_ids
    assert stats.missed >= 1
    # Its reminder time had not passed; overdue reminders are not bunched after downtime.
    assert after["24h"].reminders_sent == 0


async def test_a_patient_without_devices_still_gets_the_check_in_issued(world: World) -> None:
    patient = await world.patient(devices=())
    await world.record(patient)
    rows = {r.step: r for r in await world.rows(patient)}
    world.clock._now = rows["2h"].due_at
    await _timers(world).drain()
    after = {r.step: r for r in await world.rows(patient)}
    assert after["2h"].status == "sent"
    assert after["2h"].devices_notified == 0
    assert await world.outbox_count() == 0


async def test_an_expired_lease_is_claimed_again_without_a_second_message(world: World) -> None:
    patient = await world.patient()
    await world.record(patient)
    rows = {r.step: r for r in await world.rows(patient)}
    world.clock._now = rows["2h"].due_at
    # An instance claimed it and died before handing it over (its transaction never committed
    # in our design, but a row left claimed by any path must not be lost).
    async with world.engine.begin() as connection:
        await connection.execute(
            update(CHECK_INS)
            .where(CHECK_INS.c.id == rows["2h"].id)
            .values(status="claimed", claimed_by="dead", lease_until=world.now)
        )
    world.clock.advance(seconds=1)
    await _timers(world).drain()
    await _timers(world).drain()
    assert (await world.rows(patient))[0] is not None
    due = [c for k, c, _ in await _messages(world) if k == MessageKind.CHECK_IN_DUE]
    assert due.count(str(rows["2h"].id)) == 1


async def test_the_device_resolver_decrypts_the_push_token(world: World) -> None:
    patient = await world.patient(devices=("android",))
    await world.record(patient)
    rows = {r.step: r for r in await world.rows(patient)}
    world.clock._now = rows["2h"].due_at
    await _timers(world).drain()
    (_, _, device_id), *_ = await _messages(world)
    resolver = DeviceResolver(world.keyring)
    async with world.sessions() as s:
        assert await resolver.resolve(s, "device", device_id) == f"token-{device_id}"
        with pytest.raises(RecipientUnavailable):
            await resolver.resolve(s, "device", str(START.timestamp()))


async def test_the_device_resolver_answers_for_a_batch_in_one_pass(world: World) -> None:
    kept, revoked, erased = await world.patient(), await world.patient(), await world.patient()
    async with world.engine.connect() as connection:
        rows = await connection.execute(select(DEVICES.c.id, DEVICES.c.patient_id))
        device_of = {patient: str(device) for device, patient in rows.all()}
    async with world.sessions() as s, s.begin():
        await (await s.connection()).execute(
            update(DEVICES)
            .where(DEVICES.c.id == uuid.UUID(device_of[revoked]))
            .values(revoked_at=world.now)
        )
        await world.keyring.shred(s, erased)
    asked = [
        device_of[kept],
        device_of[revoked],
        device_of[erased],
        "not-a-uuid",
        str(uuid.uuid4()),
    ]
    async with world.engine.connect() as connection:
        found = await DeviceResolver(world.keyring).resolve_many(connection, "device", asked)
    # Only the device with a usable token and a live key has an address; the rest are permanent
    # failures for the dispatcher (left out), none of them an error for the batch.
    assert found == {device_of[kept]: f"token-{device_of[kept]}"}


async def test_nothing_more_is_pushed_once_monitoring_stopped(world: World) -> None:
    patient = await world.patient()
    await world.record(patient)
    timers = _timers(world)
    rows = sorted(await world.rows(patient), key=lambda r: r.due_at)
    first = next(r for r in rows if r.status == "pending")
    world.clock._now = first.due_at
    await timers.drain()
    sent = next(r for r in await world.rows(patient) if r.id == first.id)
    assert sent.status == "sent"
    before = len(await _messages(world))

    async with world.engine.begin() as connection:
        await connection.execute(
            update(PATIENTS).where(PATIENTS.c.id == patient).values(status="withdrawn")
        )
    # Past every due time and reminder, before the windows close.
    instants = sorted(
        {r.due_at for r in rows} | {datetime.fromisoformat(t) for r in rows for t in r.reminders_at}
    )
    for instant in instants:
        world.clock._now = instant
        await timers.drain()
    assert len(await _messages(world)) == before
    after = {r.id: r.status for r in await world.rows(patient)}
    assert after[first.id] == "cancelled"
    assert "missed" not in after.values()
    assert {"sent", "claimed"}.isdisjoint(after.values())
