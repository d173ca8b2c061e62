import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from notifications.base import Channel, DeliveryStatus, FailureReason
from notifications.templates import MessageKind
from notifications.webhook import (
    WebhookConfig,
    WebhookEndpoint,
    WebhookNotifier,
    WebhookVerificationError,
    sign,
    signed_headers,
    verify_webhook,
)
from tests.notifications.conftest import assert_no_phi, make_message
from tests.notifications.servers import FakeServer, Recorded, Reply, serving, unused_port

SECRET = "whsec-test-0123456789abcdef0123456789abcdef"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class ClinicReceiver:
    """What a clinic system does: verify, then process each idempotency key once."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.events: list[dict[str, object]] = []
        self.server = FakeServer(self.handle)

    async def handle(self, request: Recorded) -> Reply:
        try:
            verified = verify_webhook(SECRET, request.headers, request.body, datetime.now(UTC))
        except WebhookVerificationError:
            return Reply(401)
        self.keys[verified.idempotency_key] += 1
        if self.keys[verified.idempotency_key] == 1:
            self.events.append(verified.event)
        return Reply(204)


def notifier_for(url: str, *, secret: str = SECRET, timeout: float = 5.0) -> WebhookNotifier:
    return WebhookNotifier(
        WebhookConfig(
            endpoints={"clinic-pager": WebhookEndpoint(url=url, secret=secret)},
            timeout_seconds=timeout,
        )
    )


async def test_receiver_verifies_signature_and_sees_each_key_once_per_send() -> None:
    receiver = ClinicReceiver()
    async with serving(receiver.server) as base:
        notifier = notifier_for(f"{base}/hooks/interlude")
        message = make_message(Channel.WEBHOOK, "clinic-pager", kind=MessageKind.ALERT)
        first = await notifier.send(message)
        # At-least-once: the dispatcher resends after a crash; the key lets the receiver dedupe.
        second = await notifier.send(message)
        await notifier.aclose()

    assert first.status is DeliveryStatus.DELIVERED
    assert first.http_status == 204
    assert second.succeeded
    assert receiver.keys == Counter({message.idempotency_key: 2})
    assert len(receiver.events) == 1
    event = receiver.events[0]
    assert event["kind"] == "alert"
    assert event["title"] == "New alert for a patient in your clinic"
    assert_no_phi(event, message)
    request = receiver.server.requests[0]
    assert request.method == "POST"
    assert request.path == "/hooks/interlude"
    assert request.headers["content-type"] == "application/json"


async def test_a_wrong_secret_is_refused_by_the_receiver_and_is_retryable() -> None:
    receiver = ClinicReceiver()
    async with serving(receiver.server) as base:
        notifier = notifier_for(base, secret="not-the-shared-secret")
        receipt = await notifier.send(make_message(Channel.WEBHOOK, "clinic-pager"))
        await notifier.aclose()
    assert receipt.status is DeliveryStatus.RETRYABLE_FAILURE
    assert receipt.reason is FailureReason.AUTH_FAILED
    assert receiver.events == []


@pytest.mark.parametrize(
    ("reply", "reason", "retry_after"),
    [
        (Reply(500), FailureReason.PROVIDER_UNAVAILABLE, None),
        (Reply(503, headers={"retry-after": "30"}), FailureReason.PROVIDER_UNAVAILABLE, 30),
        (Reply(429, headers={"retry-after": "7"}), FailureReason.RATE_LIMITED, 7),
    ],
)
async def test_server_errors_and_throttling_are_retryable(
    reply: Reply, reason: FailureReason, retry_after: float | None
) -> None:
    receiver = ClinicReceiver()
    receiver.server.queued.append(reply)
    async with serving(receiver.server) as base:
        notifier = notifier_for(base)
        message = make_message(Channel.WEBHOOK, "clinic-pager")
        failed = await notifier.send(message)
        retried = await notifier.send(message)
        await notifier.aclose()
    assert failed.status is DeliveryStatus.RETRYABLE_FAILURE
    assert failed.reason is reason
    assert failed.retry_after_seconds == retry_after
    assert retried.status is DeliveryStatus.DELIVERED
    assert len(receiver.events) == 1


async def test_a_receiver_that_never_answers_times_out_as_retryable() -> None:
    receiver = ClinicReceiver()
    receiver.server.hold = True
    async with serving(receiver.server) as base:
        notifier = notifier_for(base, timeout=0.3)
        receipt = await asyncio.wait_for(
            notifier.send(make_message(Channel.WEBHOOK, "clinic-pager")), 5
        )
        await notifier.aclose()
    assert receipt.status is DeliveryStatus.RETRYABLE_FAILURE
    assert receipt.reason is FailureReason.TIMEOUT


async def test_connection_refused_is_retryable() -> None:
    notifier = notifier_for(f"http://127.0.0.1:{unused_port()}/hook")
    receipt = await notifier.send(make_message(Channel.WEBHOOK, "clinic-pager"))
    await notifier.aclose()
    assert receipt.status is DeliveryStatus.RETRYABLE_FAILURE
    assert receipt.reason is FailureReason.CONNECTION_FAILED


async def test_a_client_error_from_the_receiver_is_permanent() -> None:
    receiver = ClinicReceiver()
    receiver.server.queued.append(Reply(422))
    async with serving(receiver.server) as base:
        notifier = notifier_for(base)
        receipt = await notifier.send(make_message(Channel.WEBHOOK, "clinic-pager"))
        await notifier.aclose()
    assert receipt.status is DeliveryStatus.PERMANENT_FAILURE
    assert receipt.reason is FailureReason.REJECTED


async def test_an_unknown_endpoint_name_is_a_configuration_problem() -> None:
    notifier = notifier_for("http://127.0.0.1:9/")
    receipt = await notifier.send(make_message(Channel.WEBHOOK, "no-such-endpoint"))
    await notifier.aclose()
    assert receipt.reason is FailureReason.MISCONFIGURED
    assert receipt.retryable


# verify_webhook, the receiver's half


def _headers(timestamp: datetime, body: bytes, secret: str = SECRET) -> dict[str, str]:
    return signed_headers(secret, int(timestamp.timestamp()), body, "outbox:1")


def test_verify_accepts_a_fresh_signature_with_any_header_case() -> None:
    body = b'{"id":"m1"}'
    headers = {k.upper(): v for k, v in _headers(NOW, body).items()}
    verified = verify_webhook(SECRET, headers, body, NOW + timedelta(seconds=30))
    assert verified.idempotency_key == "outbox:1"
    assert verified.event == {"id": "m1"}
    assert verified.timestamp == NOW


@pytest.mark.parametrize("skew", [timedelta(minutes=6), timedelta(minutes=-6)])
def test_verify_refuses_timestamps_outside_the_replay_window(skew: timedelta) -> None:
    body = b"{}"
    with pytest.raises(WebhookVerificationError, match="replay window"):
        verify_webhook(SECRET, _headers(NOW, body), body, NOW + skew)


def test_verify_honours_a_custom_tolerance() -> None:
    body = b"{}"
    headers = _headers(NOW, body)
    verify_webhook(SECRET, headers, body, NOW + timedelta(seconds=50), timedelta(minutes=1))
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, body, NOW + timedelta(seconds=70), timedelta(minutes=1))


def test_verify_refuses_a_tampered_body_or_timestamp() -> None:
    body = b'{"id":"m1"}'
    headers = _headers(NOW, body)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(SECRET, headers, b'{"id":"m2"}', NOW)
    moved = {**headers, "Webhook-Timestamp": str(int(NOW.timestamp()) + 1)}
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(SECRET, moved, body, NOW)


def test_verify_accepts_any_of_several_signatures_during_secret_rotation() -> None:
    body = b"{}"
    ts = int(NOW.timestamp())
    headers = _headers(NOW, body, secret="old-secret")
    headers["Webhook-Signature"] = f"{sign('old-secret', ts, body)}, {sign(SECRET, ts, body)}"
    assert verify_webhook(SECRET, headers, body, NOW).idempotency_key == "outbox:1"


@pytest.mark.parametrize("missing", ["Webhook-Timestamp", "Webhook-Signature", "Idempotency-Key"])
def test_verify_requires_every_header(missing: str) -> None:
    body = b"{}"
    headers = _headers(NOW, body)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook(SECRET, headers, body, NOW)


def test_verify_refuses_a_malformed_timestamp_and_a_non_object_body() -> None:
    with pytest.raises(WebhookVerificationError, match="malformed"):
        verify_webhook(
            SECRET,
            {"Webhook-Timestamp": "yesterday", "Webhook-Signature": "v1=0", "Idempotency-Key": "k"},
            b"{}",
            NOW,
        )
    body = b"[1]"
    with pytest.raises(WebhookVerificationError, match="JSON object"):
        verify_webhook(SECRET, _headers(NOW, body), body, NOW)
