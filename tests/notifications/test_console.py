import asyncio
import io
import json
from datetime import UTC, datetime
from pathlib import Path

from notifications.base import Channel, DeliveryStatus
from notifications.console import ConsoleConfig, ConsoleNotifier
from tests.notifications.conftest import assert_no_phi, make_message


async def test_writes_one_json_line_per_message_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "notifications.jsonl"
    notifier = ConsoleNotifier(
        ConsoleConfig(path=str(path)), clock=lambda: datetime(2025, 1, 1, tzinfo=UTC)
    )
    messages = [make_message(Channel.SMS, f"+1555010{i}") for i in range(20)]
    receipts = await asyncio.gather(*(notifier.send(m) for m in messages))
    await notifier.aclose()

    assert all(r.status is DeliveryStatus.DELIVERED for r in receipts)
    lines = path.read_text().splitlines()
    assert len(lines) == 20
    records = [json.loads(line) for line in lines]
    assert {r["message_id"] for r in records} == {m.id for m in messages}
    first = next(r for r in records if r["message_id"] == messages[0].id)
    assert first["channel"] == "sms"
    assert first["title"] == "You have a new check-in"
    assert first["data"] == {"check_in_id": messages[0].data.check_in_id}
    assert first["at"] == "2025-01-01T00:00:00+00:00"


async def test_the_log_holds_a_fingerprint_not_the_contact_details() -> None:
    stream = io.StringIO()
    notifier = ConsoleNotifier(ConsoleConfig(), stream=stream)
    one = make_message(Channel.EMAIL, "jane.doe@example.org")
    other = make_message(Channel.EMAIL, "someone.else@example.org")
    await notifier.send(one)
    await notifier.send(other)
    text = stream.getvalue()
    assert "example.org" not in text
    records = [json.loads(line) for line in text.splitlines()]
    for message, record in zip([one, other], records, strict=True):
        assert_no_phi(
            record,
            message,
            also_allowed=(record["at"], record["channel"], record["recipient_fingerprint"]),
        )
    fingerprints = [record["recipient_fingerprint"] for record in records]
    assert fingerprints[0] != fingerprints[1]
