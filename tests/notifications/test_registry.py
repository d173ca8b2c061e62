import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from notifications.base import Channel, DeliveryStatus, FailureReason
from notifications.registry import NotificationsConfig, NotifierRegistry
from notifications.webhook import verify_webhook
from tests.notifications.conftest import make_message
from tests.notifications.servers import FakeServer, Recorded, Reply, serving

SECRET = "registry-test-secret-0123456789abcdef"


async def test_with_nothing_configured_every_channel_goes_to_the_console(tmp_path: Path) -> None:
    log = tmp_path / "notifications.jsonl"
    config = msgspec.convert({"console": {"path": str(log)}}, NotificationsConfig)
    async with NotifierRegistry.from_config(config) as registry:
        assert registry.channels == {Channel.CONSOLE}
        receipts = [await registry.send(make_message(channel, "+15550100")) for channel in Channel]
    assert all(r.status is DeliveryStatus.DELIVERED for r in receipts)
    logged = [json.loads(line)["channel"] for line in log.read_text().splitlines()]
    assert logged == [channel.value for channel in Channel]


async def test_configured_channels_route_to_their_adapter_and_others_are_held(
    tmp_path: Path,
) -> None:
    seen: list[str] = []

    async def receive(request: Recorded) -> Reply:
        seen.append(
            verify_webhook(SECRET, request.headers, request.body, datetime.now(UTC)).idempotency_key
        )
        return Reply(200)

    async with serving(FakeServer(receive)) as base:
        raw = {
            "console": {"path": str(tmp_path / "console.jsonl")},
            "console_fallback": False,
            "webhook": {"endpoints": {"pager": {"url": f"{base}/hook", "secret": SECRET}}},
        }
        config = msgspec.json.decode(json.dumps(raw), type=NotificationsConfig)
        async with NotifierRegistry.from_config(config) as registry:
            hook = make_message(Channel.WEBHOOK, "pager")
            delivered = await registry.send(hook)
            held = await registry.send(make_message(Channel.SMS, "+15550100"))

    assert delivered.status is DeliveryStatus.DELIVERED
    assert seen == [hook.idempotency_key]
    assert held.status is DeliveryStatus.RETRYABLE_FAILURE
    assert held.reason is FailureReason.MISCONFIGURED
    assert not (tmp_path / "console.jsonl").exists()


def test_unknown_configuration_keys_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="telegram"):
        msgspec.convert({"telegram": {}}, NotificationsConfig)
