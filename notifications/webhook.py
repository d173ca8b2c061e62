"""Signed webhooks for clinic systems, paging tools and chat bridges.

The signature is HMAC-SHA256 over "<timestamp>.<body>" (the scheme Stripe and the Standard
Webhooks spec use): the timestamp inside the MAC lets the receiver refuse replays outside a short
window, and the `Idempotency-Key` header lets it drop the duplicates at-least-once delivery
produces inside that window. `verify_webhook` is the receiver's half, for clinics that run Python
and for our own tests.
"""

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
import msgspec

from notifications.base import (
    Channel,
    Clock,
    DeliveryError,
    FailureReason,
    Message,
    Receipt,
    accepted,
    utc_now,
)
from notifications.http import build_client, classify_status, deliver

TIMESTAMP_HEADER: Final = "Webhook-Timestamp"
SIGNATURE_HEADER: Final = "Webhook-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
SIGNATURE_VERSION: Final = "v1"
DEFAULT_TOLERANCE: Final = timedelta(minutes=5)


class WebhookEndpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    secret: str

    def __repr__(self) -> str:
        return "WebhookEndpoint(url=<redacted>, secret=<redacted>)"


class WebhookConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # A message's recipient names one of these endpoints, so the outbox stores a name, never a
    # secret.
    endpoints: dict[str, WebhookEndpoint]
    timeout_seconds: float = 10.0
    ca_file: str | None = None


class WebhookEvent(msgspec.Struct, frozen=True):
    """The JSON body a receiver gets."""

    id: str
    idempotency_key: str
    kind: str
    audience: str
    title: str
    body: str
    data: dict[str, str]
    urgency: str


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def signed_headers(
    secret: str | bytes, timestamp: int, body: bytes, idempotency_key: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        IDEMPOTENCY_HEADER: idempotency_key,
    }


class WebhookVerificationError(Exception):
    message_is_safe_to_log = True


class VerifiedWebhook(msgspec.Struct, frozen=True):
    idempotency_key: str
    timestamp: datetime
    event: dict[str, Any]


def verify_webhook(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> VerifiedWebhook:
    """Check signature and replay window; return the idempotency key for the receiver to dedupe.

    Raises `WebhookVerificationError` on a missing header, a stale or future timestamp, or a bad
    signature. Several `v1=` signatures separated by commas or spaces are accepted (a sender
    rotating its secret may sign with both).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    raw_signatures = lowered.get(SIGNATURE_HEADER.lower())
    idempotency_key = lowered.get(IDEMPOTENCY_HEADER.lower())
    if raw_timestamp is None or raw_signatures is None or not idempotency_key:
        raise WebhookVerificationError("missing webhook header")
    if not raw_timestamp.isdigit():
        raise WebhookVerificationError("malformed timestamp")
    timestamp = int(raw_timestamp)
    sent_at = datetime.fromtimestamp(timestamp, tz=now.tzinfo)
    if abs(now - sent_at) > tolerance:
        raise WebhookVerificationError("timestamp outside the replay window")
    expected = sign(secret, timestamp, body)
    candidates = [c for c in raw_signatures.replace(",", " ").split() if c]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookVerificationError("signature mismatch")
    try:
        event = msgspec.json.decode(body, type=dict[str, Any])
    except msgspec.DecodeError as error:
        raise WebhookVerificationError("body is not a JSON object") from error
    return VerifiedWebhook(idempotency_key=idempotency_key, timestamp=sent_at, event=event)


def webhook_body(message: Message) -> bytes:
    event = WebhookEvent(
        id=message.id,
        idempotency_key=message.idempotency_key,
        kind=message.kind.value,
        audience=message.audience.value,
        title=message.title,
        body=message.body,
        data=message.data.as_strings(),
        urgency=message.urgency.value,
    )
    return msgspec.json.encode(event)


class WebhookNotifier:
    channel = Channel.WEBHOOK

    def __init__(
        self,
        config: WebhookConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._config = config
        self._client = client or build_client(
            timeout_seconds=config.timeout_seconds, ca_file=config.ca_file
        )
        self._clock = clock

    async def send(self, message: Message) -> Receipt:
        return await deliver(message, self.channel, lambda: self._send(message))

    async def _send(self, message: Message) -> Receipt:
        if (
            not isinstance(message.recipient, str)
            or message.recipient not in self._config.endpoints
        ):
            raise DeliveryError(FailureReason.MISCONFIGURED)
        endpoint = self._config.endpoints[message.recipient]
        body = webhook_body(message)
        now = self._clock()
        headers = signed_headers(
            endpoint.secret, int(now.timestamp()), body, message.idempotency_key
        )
        response = await self._client.post(endpoint.url, content=body, headers=headers)
        error = classify_status(
            response.status_code, retry_after=response.headers.get("Retry-After"), now=now
        )
        if error is not None:
            raise error
        return accepted(
            message,
            self.channel,
            provider_message_id=None,
            delivered=True,
            http_status=response.status_code,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
