"""Apple Push Notification service, provider API over HTTP/2 with token-based authentication.

`POST {base}/3/device/{token}` with `authorization: bearer <JWT>`, the JWT signed ES256 with the
team's .p8 key (`kid` = key id, `iss` = team id, `iat`). Apple rejects tokens older than an hour
and throttles tokens refreshed more often than every 20 minutes (TooManyProviderTokenUpdates), so
the token is cached and replaced after `token_refresh_seconds` (50 min by default). Headers:
`apns-topic` (bundle id), `apns-push-type: alert`, `apns-priority` 10/5, `apns-expiration`,
`apns-collapse-id` (≤ 64 bytes) and `apns-id` (a UUID we derive from the idempotency key, so a
resend has the same id). Source: developer.apple.com "Sending notification requests to APNs" and
"Handling notification responses from APNs".
"""

import re
import uuid
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
import jwt
import msgspec

from notifications.base import (
    Channel,
    Clock,
    DeliveryError,
    FailureReason,
    Message,
    Receipt,
    Urgency,
    accepted,
    bounded_key,
    utc_now,
)
from notifications.http import build_client, classify_status, deliver

PRODUCTION_URL: Final = "https://api.push.apple.com"
SANDBOX_URL: Final = "https://api.sandbox.push.apple.com"
# Namespace for deriving apns-id from our idempotency key (any fixed UUID works).
_APNS_ID_NAMESPACE: Final = uuid.UUID("7f1c2a4e-3b5d-4c6e-8f90-a1b2c3d4e5f6")

# Device tokens are opaque but hexadecimal in practice; this also keeps the URL path clean.
_DEVICE_TOKEN: Final = re.compile(r"[0-9A-Za-z]{1,400}")
# Reasons that mean the device token will never work again: drop the device.
_TOKEN_REASONS: Final = frozenset(
    {"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic", "ExpiredToken"}
)
_AUTH_REASONS: Final = frozenset(
    {"InvalidProviderToken", "MissingProviderToken", "BadCertificate", "BadCertificateEnvironment"}
)


class ApnsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    team_id: str
    key_id: str
    private_key: str  # PEM (.p8), P-256
    topic: str  # the app's bundle id
    base_url: str = PRODUCTION_URL
    timeout_seconds: float = 10.0
    ca_file: str | None = None
    token_refresh_seconds: int = 50 * 60

    def __repr__(self) -> str:
        return f"ApnsConfig(team_id={self.team_id!r}, topic={self.topic!r}, key=<redacted>)"


class ProviderTokens:
    """The ES256 provider token, reused until it is `token_refresh_seconds` old."""

    def __init__(self, config: ApnsConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._token: tuple[str, datetime] | None = None
        self.issued = 0

    def get(self) -> str:
        now = self._clock()
        refresh = timedelta(seconds=self._config.token_refresh_seconds)
        if self._token is None or now - self._token[1] >= refresh:
            value = jwt.encode(
                {"iss": self._config.team_id, "iat": int(now.timestamp())},
                self._config.private_key,
                algorithm="ES256",
                headers={"kid": self._config.key_id},
            )
            self._token = (value, now)
            self.issued += 1
        return self._token[0]

    def invalidate(self) -> None:
        self._token = None


def apns_id_for(idempotency_key: str) -> str:
    return str(uuid.uuid5(_APNS_ID_NAMESPACE, idempotency_key))


def apns_payload(message: Message) -> dict[str, Any]:
    return {
        "aps": {
            "alert": {"title": message.title, "body": message.body},
            "sound": "default",
            "thread-id": message.kind.value,
        },
        **message.payload_fields(),
    }


def apns_headers(message: Message, topic: str, now: datetime) -> dict[str, str]:
    high = message.urgency is Urgency.HIGH
    return {
        "apns-topic": topic,
        "apns-push-type": "alert",
        "apns-priority": "10" if high else "5",
        # 0 would mean "deliver once or drop"; we want APNs to store it for the TTL.
        "apns-expiration": str(int(now.timestamp()) + message.ttl_seconds),
        "apns-collapse-id": bounded_key(message.effective_collapse_key, 64),
        "apns-id": apns_id_for(message.idempotency_key),
    }


class _ApnsError(msgspec.Struct):
    reason: str = ""


def classify_apns_error(
    status: int, content: bytes, retry_after: str | None, now: datetime
) -> DeliveryError:
    reason = _reason(content)
    if status == 410 or reason in _TOKEN_REASONS:
        return DeliveryError(FailureReason.TOKEN_INVALID, http_status=status)
    if reason in _AUTH_REASONS or reason == "ExpiredProviderToken":
        return DeliveryError(FailureReason.AUTH_FAILED, http_status=status)
    if reason in ("TopicDisallowed", "BadTopic"):
        return DeliveryError(FailureReason.MISCONFIGURED, http_status=status)
    error = classify_status(status, retry_after=retry_after, now=now)
    return error or DeliveryError(FailureReason.PROTOCOL_ERROR, http_status=status)


class ApnsNotifier:
    channel = Channel.APNS

    def __init__(
        self,
        config: ApnsConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._config = config
        # APNs speaks only HTTP/2.
        self._client = client or build_client(
            timeout_seconds=config.timeout_seconds, ca_file=config.ca_file, http2=True
        )
        self._clock = clock
        self.tokens = ProviderTokens(config, clock)
        self._base = config.base_url.rstrip("/")

    async def send(self, message: Message) -> Receipt:
        return await deliver(message, self.channel, lambda: self._send(message))

    async def _send(self, message: Message) -> Receipt:
        if not isinstance(message.recipient, str) or not _DEVICE_TOKEN.fullmatch(message.recipient):
            raise DeliveryError(FailureReason.TOKEN_INVALID)
        body = msgspec.json.encode(apns_payload(message))
        response = await self._post(message, body)
        if response.status_code == 403 and _reason(response.content) == "ExpiredProviderToken":
            # Our clock or cache let the token age past an hour: sign a new one, try once more.
            self.tokens.invalidate()
            response = await self._post(message, body)
        if response.status_code != 200:
            raise classify_apns_error(
                response.status_code,
                response.content,
                response.headers.get("retry-after"),
                self._clock(),
            )
        return accepted(
            message,
            self.channel,
            provider_message_id=response.headers.get("apns-id"),
            http_status=response.status_code,
        )

    async def _post(self, message: Message, body: bytes) -> httpx.Response:
        headers = apns_headers(message, self._config.topic, self._clock())
        headers["authorization"] = f"bearer {self.tokens.get()}"
        headers["content-type"] = "application/json"
        return await self._client.post(
            f"{self._base}/3/device/{message.recipient}", content=body, headers=headers
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _reason(content: bytes) -> str:
    try:
        return msgspec.json.decode(content, type=_ApnsError).reason
    except msgspec.DecodeError:
        return ""
