"""Preferences honoured at send time, on both databases: the dispatcher's gate reads the
patient's channels and quiet hours and the clinician's channel and on-call state, and each
queued message is sent (perhaps by another route), held without spending an attempt, or
cancelled with a reason. Sends go through the real console channel (every channel falls back to
it in development) and a real webhook receiver on 127.0.0.1."""

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from backend.db.models.device import Device
from backend.db.models.patient import Patient
from backend.domain.check_ins.delivery import CHANNEL_BY_PLATFORM
from backend.domain.check_ins.recipients import DeviceResolver
from backend.domain.outbox import repository as outbox
from backend.domain.outbox.dispatcher import Dispatcher
from backend.domain.outbox.enqueue import OutboxRequest, RecipientType, enqueue
from backend.domain.outbox.recipients import ChainResolver, DirectResolver
from backend.domain.preferences import repository
from backend.domain.preferences.gate import PreferenceGate
from backend.domain.preferences.recipients import PatientPhoneResolver
from backend.domain.preferences.rules import StaffPreferences
from notifications.base import Channel, Urgency
from notifications.console import ConsoleConfig
from notifications.registry import NotificationsConfig, NotifierRegistry
from notifications.templates import MessageKind
from notifications.webhook import WebhookConfig, WebhookEndpoint, verify_webhook
from tests.notifications.servers import FakeServer, Recorded, Reply, serving
from tests.sessions.world import World

SECRET = "pager-secret"


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await World(engine).setup()


class Pager:
    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.server = FakeServer(self.handle)

    async def handle(self, request: Recorded) -> Reply:
        verified = verify_webhook(SECRET, request.headers, request.body, datetime.now(UTC))
        self.keys[verified.idempotency_key] += 1
        return Reply(204)


@pytest.fixture
async def pager() -> AsyncIterator[tuple[Pager, str]]:
    pager = Pager()
    async with serving(pager.server) as base:
        yield pager, base


async def _dispatcher(
    world: World, console: Path, pager_url: str | None = None
) -> tuple[Dispatcher, NotifierRegistry]:
    webhook = None
    if pager_url is not None:
        webhook = WebhookConfig(
            endpoints={"night-pager": WebhookEndpoint(url=pager_url, secret=SECRET)},
            timeout_seconds=2.0,
        )
    registry = NotifierRegistry.from_config(
        NotificationsConfig(console=ConsoleConfig(path=str(console)), webhook=webhook)
    )
    resolver = ChainResolver({})
    resolver.register(RecipientType.DEVICE, DeviceResolver(world.keyring))
    resolver.register(RecipientType.PATIENT_PHONE, PatientPhoneResolver(world.keyring))
    resolver.register(RecipientType.WEBHOOK, DirectResolver(frozenset({RecipientType.WEBHOOK})))
    dispatcher = Dispatcher(
        world.engine,
        registry,
        resolver,
        instance="node-a",
        clock=world.clock,
        gate=PreferenceGate(),
    )
    return dispatcher, registry


async def _device_of(world: World, patient_id: uuid.UUID) -> uuid.UUID:
    async with world.engine.connect() as connection:
        device_id = await connection.scalar(
            select(col(Device.id)).where(col(Device.patient_id) == patient_id)
        )
    assert isinstance(device_id, uuid.UUID)
    return device_id


async def _give_phone(world: World, patient_id: uuid.UUID, number: str) -> None:
    async with world.sessions() as s, s.begin():
        patient = await s.get(Patient, patient_id)
        assert patient is not None
        keys = await world.keyring.owner_keys(s, patient_id, active_only=True)
        patient.phone_ciphertext = keys.encrypt(
            table="patients",
            column="phone_ciphertext",
            row_id=str(patient_id),
            plaintext=number.encode(),
        )
        s.add(patient)


async def _choose(world: World, patient_id: uuid.UUID, channels: list[str]) -> None:
    async with world.engine.begin() as connection:
        await repository.save_patient_channels(
            connection, patient_id, channels, by=world.staff_id, now=world.now
        )


async def _queue(world: World, *requests: OutboxRequest) -> None:
    async with world.sessions() as s, s.begin():
        for request in requests:
            assert await enqueue(s, request, now=world.now)


def _push(device_id: uuid.UUID, key: str, expires_at: datetime) -> OutboxRequest:
    return OutboxRequest(
        idempotency_key=key,
        channel=CHANNEL_BY_PLATFORM["android"],
        kind=MessageKind.CHECK_IN_DUE,
        recipient_type=RecipientType.DEVICE,
        recipient_id=str(device_id),
        check_in_id=str(uuid.uuid4()),
        expires_at=expires_at,
    )


def _sms(patient_id: uuid.UUID, key: str, expires_at: datetime) -> OutboxRequest:
    return OutboxRequest(
        idempotency_key=key,
        channel=Channel.SMS,
        kind=MessageKind.CHECK_IN_REMINDER,
        recipient_type=RecipientType.PATIENT_PHONE,
        recipient_id=str(patient_id),
        check_in_id=str(uuid.uuid4()),
        expires_at=expires_at,
    )


def _alert(staff_id: uuid.UUID, key: str, urgency: Urgency = Urgency.NORMAL) -> OutboxRequest:
    return OutboxRequest(
        idempotency_key=key,
        channel=Channel.EMAIL,
        kind=MessageKind.ALERT,
        recipient_type=RecipientType.STAFF,
        recipient_id=str(staff_id),
        alert_id=str(uuid.uuid4()),
        urgency=urgency,
    )


async def _rows(world: World) -> dict[str, Any]:
    async with world.engine.connect() as connection:
        rows = (await connection.execute(select(outbox.TABLE))).all()
    return {row.idempotency_key: row for row in rows}


def _console_lines(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    lines = [msgspec.json.decode(line) for line in path.read_text().splitlines()]
    return {line["data"].get("check_in_id") or line["message_id"]: line for line in lines}


async def test_patient_channels_decide_push_or_sms(world: World, tmp_path: Path) -> None:
    console = tmp_path / "console.jsonl"
    push_only = await world.patient()
    sms_only = await world.patient()
    await _give_phone(world, sms_only, "+33 6 12 34 56 78")
    await _choose(world, sms_only, ["sms"])
    closes = world.now + timedelta(hours=6)
    await _queue(
        world,
        _push(await _device_of(world, push_only), "push-default", closes),
        _push(await _device_of(world, sms_only), "push-unchosen", closes),
        _sms(sms_only, "sms-opted-in", closes),
        _sms(push_only, "sms-not-opted-in", closes),
    )
    dispatcher, registry = await _dispatcher(world, console)
    async with registry:
        assert await dispatcher.drain() == 4
    rows = await _rows(world)
    assert rows["push-default"].status == "sent"
    assert rows["sms-opted-in"].status == "sent"
    for key in ("push-unchosen", "sms-not-opted-in"):
        assert rows[key].status == "cancelled"
        assert rows[key].last_reason == "channel_not_chosen"
    sent_channels = sorted(line["channel"] for line in _console_lines(console).values())
    assert sent_channels == ["fcm", "sms"]
    assert dispatcher.stats.dropped == 2


async def test_quiet_hours_silence_a_push_and_hold_an_sms_until_morning(
    world: World, tmp_path: Path
) -> None:
    console = tmp_path / "console.jsonl"
    patient = await world.patient(time_zone="Europe/Paris")
    await _give_phone(world, patient, "+33612345678")
    await _choose(world, patient, ["push", "sms"])
    # 23:00 in Paris (UTC+1): inside the default 21:00-08:00 quiet hours.
    world.clock._now = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
    morning = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 Paris
    await _queue(
        world,
        _push(await _device_of(world, patient), "night-push", morning + timedelta(hours=4)),
        _sms(patient, "night-sms", morning + timedelta(hours=4)),
        _sms(patient, "night-sms-too-late", morning - timedelta(hours=1)),
    )
    dispatcher, registry = await _dispatcher(world, console)
    async with registry:
        await dispatcher.drain()
        rows = await _rows(world)
        assert rows["night-push"].status == "sent"
        (line,) = _console_lines(console).values()
        assert line["urgency"] == "low"  # delivered without waking anyone
        held = rows["night-sms"]
        assert held.status == "pending"
        assert held.attempts == 0  # a hold is not a failure
        assert held.next_attempt_at == morning
        assert held.last_reason == "quiet_hours"
        assert rows["night-sms-too-late"].status == "cancelled"

        world.clock._now = morning
        assert await dispatcher.drain() == 1
    assert (await _rows(world))["night-sms"].status == "sent"


async def test_a_clinicians_channel_and_on_call_state_route_their_alerts(
    world: World, tmp_path: Path, pager: tuple[Pager, str]
) -> None:
    receiver, base = pager
    console = tmp_path / "console.jsonl"
    async with world.engine.begin() as connection:
        await repository.save_staff(
            connection,
            world.staff_id,
            StaffPreferences(channel="webhook", webhook_endpoint="night-pager", on_call=False),
            now=world.now,
        )
    await _queue(
        world,
        _alert(world.staff_id, "routine"),
        _alert(world.staff_id, "urgent", Urgency.HIGH),
    )
    dispatcher, registry = await _dispatcher(world, console, base + "/hook")
    async with registry:
        await dispatcher.drain()
        rows = await _rows(world)
        assert rows["urgent"].status == "sent"
        assert rows["urgent"].channel == "email"  # as queued
        assert len(receiver.keys) == 1  # ...but it went to the pager they chose
        routine = rows["routine"]
        assert routine.status == "pending"
        assert routine.last_reason == "off_call"
        assert routine.attempts == 0

        world.clock.advance(minutes=16)
        assert await dispatcher.drain() == 1  # still off call: held again, not lost
        assert (await _rows(world))["routine"].status == "pending"

        async with world.engine.begin() as connection:
            await repository.save_staff(
                connection,
                world.staff_id,
                StaffPreferences(channel="webhook", webhook_endpoint="night-pager"),
                now=world.now,
            )
        world.clock.advance(minutes=16)
        assert await dispatcher.drain() == 1
    assert (await _rows(world))["routine"].status == "sent"
    assert len(receiver.keys) == 2
    assert set(receiver.keys.values()) == {1}
    assert not _console_lines(console)
