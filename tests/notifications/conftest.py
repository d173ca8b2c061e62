import uuid
from pathlib import Path
from typing import Any

import pytest

from notifications.base import Channel, Message, MessageData, Urgency, WebPushSubscription
from notifications.templates import MessageKind
from tests.notifications.servers import TlsFiles, make_tls_files


def make_message(
    channel: Channel,
    recipient: str | WebPushSubscription,
    *,
    kind: MessageKind = MessageKind.CHECK_IN_DUE,
    urgency: Urgency = Urgency.HIGH,
    ttl_seconds: int = 3600,
    collapse_key: str | None = None,
) -> Message:
    message_id = str(uuid.uuid4())
    return Message(
        id=message_id,
        idempotency_key=f"outbox:{message_id}",
        channel=channel,
        recipient=recipient,
        kind=kind,
        data=MessageData(check_in_id=str(uuid.uuid4())),
        urgency=urgency,
        ttl_seconds=ttl_seconds,
        collapse_key=collapse_key,
    )


def string_leaves(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in string_leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in string_leaves(v)]
    return []


def assert_no_phi(payload: Any, message: Message, *, also_allowed: tuple[str, ...] = ()) -> None:
    """Every text a device, mailbox or receiver sees is a template text, an enum value or one of
    the message's identifiers: nothing else can have come from patient data. The recipient's
    address is never in the content."""
    allowed = {
        message.title,
        message.body,
        message.id,
        message.idempotency_key,
        message.kind.value,
        message.urgency.value,
        message.audience.value,
        message.effective_collapse_key,
        *message.data.as_strings().values(),
        *also_allowed,
    }
    leaves = string_leaves(payload)
    assert leaves, "the payload carries no text at all"
    unexpected = [leaf for leaf in leaves if leaf not in allowed]
    assert unexpected == []
    if isinstance(message.recipient, str):
        assert all(message.recipient not in leaf for leaf in leaves)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(Path(tmp_path_factory.mktemp("tls")))
