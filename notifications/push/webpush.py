"""Web Push for the browser companion: RFC 8030 delivery, RFC 8291 encryption, RFC 8292 VAPID.

The payload is encrypted to the subscription's P-256 key with `aes128gcm` (RFC 8188) through
`http_ece`, with a fresh ephemeral key and salt per message, so the push service relays bytes it
cannot read. VAPID identifies us: an ES256 JWT whose `aud` is the push service's origin, `exp`
at most 24 h ahead and `sub` a contact URI, sent as `Authorization: vapid t=<jwt>, k=<public key>`.
`TTL`, `Urgency` and `Topic` (replaces an undelivered message with the same topic, RFC 8030 §5.4)
are headers. A 404 or 410 means the subscription is gone.
"""

import base64
import hashlib
import json
import os
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

import http_ece
import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifications.base import (
    Channel,
    Clock,
    DeliveryError,
    FailureReason,
    Message,
    Receipt,
    Urgency,
    WebPushSubscription,
    accepted,
    utc_now,
)
from notifications.http import build_client, classify_status, deliver

# RFC 8292 §2: exp no more than 24 hours ahead; 12 h leaves room for clock skew.
VAPID_LIFETIME: Final = timedelta(hours=12)
VAPID_REFRESH_MARGIN: Final = timedelta(hours=1)
# RFC 8030 §5.3 urgency values.
_URGENCY: Final = {Urgency.HIGH: "high", Urgency.NORMAL: "normal", Urgency.LOW: "low"}
# RFC 8030 §5.4: a topic is at most 32 characters of the URL-safe base64 alphabet.
TOPIC_LENGTH: Final = 32


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


class WebPushConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # The application server's VAPID private key: base64url raw 32-byte scalar (the format
    # `web-push generate-vapid-keys` prints) or PEM.
    vapid_private_key: str
    # Contact for the push service operator: "mailto:ops@clinic.example" or an https URL.
    vapid_subject: str
    timeout_seconds: float = 10.0
    ca_file: str | None = None

    def __repr__(self) -> str:
        return f"WebPushConfig(vapid_subject={self.vapid_subject!r}, key=<redacted>)"


def load_vapid_key(value: str) -> ec.EllipticCurvePrivateKey:
    if value.lstrip().startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(value.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the VAPID key must be a P-256 key")
        return key
    return ec.derive_private_key(int.from_bytes(b64url_decode(value), "big"), ec.SECP256R1())


def topic_for(collapse_key: str) -> str:
    """A Topic header value: the collapse key itself if it fits the alphabet, else a digest."""
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    if len(collapse_key) <= TOPIC_LENGTH and set(collapse_key) <= allowed:
        return collapse_key
    return b64url_encode(hashlib.sha256(collapse_key.encode()).digest())[:TOPIC_LENGTH]


def webpush_payload(message: Message) -> bytes:
    """What the service worker decrypts and shows: template text plus identifiers."""
    return json.dumps(
        {"title": message.title, "body": message.body, "data": message.payload_fields()},
        separators=(",", ":"),
    ).encode()


def encrypt_for(subscription: WebPushSubscription, plaintext: bytes) -> bytes:
    """RFC 8291 aes128gcm body: ephemeral ECDH with the browser's key, bound to its secret."""
    try:
        receiver_key = b64url_decode(subscription.p256dh)
        auth_secret = b64url_decode(subscription.auth)
        ephemeral = ec.generate_private_key(ec.SECP256R1())
        body: bytes = http_ece.encrypt(
            plaintext,
            salt=os.urandom(16),
            private_key=ephemeral,
            dh=receiver_key,
            auth_secret=auth_secret,
            version="aes128gcm",
        )
    except (ValueError, http_ece.ECEException) as error:
        # A subscription whose keys are not a P-256 point and a 16-byte secret will never work.
        raise DeliveryError(FailureReason.TOKEN_INVALID) from error
    return body


class VapidSigner:
    """VAPID JWTs per push-service origin, reused until an hour before they expire."""

    def __init__(self, config: WebPushConfig, clock: Clock) -> None:
        self._key = load_vapid_key(config.vapid_private_key)
        self._subject = config.vapid_subject
        self._clock = clock
        self.public_key = b64url_encode(
            self._key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )
        self._cache: dict[str, tuple[str, datetime]] = {}

    def authorization(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = self._clock()
        cached = self._cache.get(audience)
        if cached is None or now >= cached[1] - VAPID_REFRESH_MARGIN:
            expires = now + VAPID_LIFETIME
            token = jwt.encode(
                {"aud": audience, "exp": int(expires.timestamp()), "sub": self._subject},
                self._key,
                algorithm="ES256",
                headers={"typ": "JWT"},
            )
            cached = (token, expires)
            self._cache[audience] = cached
        return f"vapid t={cached[0]}, k={self.public_key}"


class WebPushNotifier:
    channel = Channel.WEB_PUSH

    def __init__(
        self,
        config: WebPushConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._client = client or build_client(
            timeout_seconds=config.timeout_seconds, ca_file=config.ca_file
        )
        self._clock = clock
        self.vapid = VapidSigner(config, clock)

    async def send(self, message: Message) -> Receipt:
        return await deliver(message, self.channel, lambda: self._send(message))

    async def _send(self, message: Message) -> Receipt:
        subscription = message.recipient
        if not isinstance(subscription, WebPushSubscription) or urlsplit(
            subscription.endpoint
        ).scheme not in ("https", "http"):
            raise DeliveryError(FailureReason.TOKEN_INVALID)
        body = encrypt_for(subscription, webpush_payload(message))
        response = await self._client.post(
            subscription.endpoint,
            content=body,
            headers={
                "Authorization": self.vapid.authorization(subscription.endpoint),
                "Content-Encoding": "aes128gcm",
                "Content-Type": "application/octet-stream",
                "TTL": str(message.ttl_seconds),
                "Urgency": _URGENCY[message.urgency],
                "Topic": topic_for(message.effective_collapse_key),
            },
        )
        if response.status_code in (404, 410):
            raise DeliveryError(FailureReason.TOKEN_INVALID, http_status=response.status_code)
        error = classify_status(
            response.status_code,
            retry_after=response.headers.get("Retry-After"),
            now=self._clock(),
        )
        if error is not None:
            raise error
        return accepted(
            message,
            self.channel,
            provider_message_id=response.headers.get("Location"),
            http_status=response.status_code,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
