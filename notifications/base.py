"""The one protocol every channel speaks: `send(message) -> receipt`, and the failure vocabulary.

Delivery is at-least-once (engineering-notes §C.5): the backend's outbox retries a message until a
receipt says it was accepted or failed permanently, so a notifier never raises for a delivery
failure. It returns a `Receipt` whose status tells the dispatcher what to do next: retry later
(timeouts, refused connections, 5xx, 429 with Retry-After, credentials the operator must fix) or
stop (the provider said the token or address is no good, or the request itself is wrong).
"""

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Protocol

import msgspec

from notifications.templates import Audience, MessageKind, Template, template_for

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Channel(StrEnum):
    CONSOLE = "console"
    WEBHOOK = "webhook"
    EMAIL = "email"
    SMS = "sms"
    WEB_PUSH = "web_push"
    FCM = "fcm"
    APNS = "apns"


class Urgency(StrEnum):
    """How hard the provider should try to wake the device (RFC 8030 §5.3 vocabulary, coarsened)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Identifiers only: letters, digits, '-', '_', ':', '.'; enough for UUIDs, ULIDs and composite
# keys, and too narrow to carry a sentence, a name or an e-mail address.
_IDENTIFIER = re.compile(r"[A-Za-z0-9_\-:.]{1,128}")
# FCM allows up to 28 days of TTL; RFC 8030 leaves the maximum to the push service. A check-in
# notification is worthless after its window closes anyway.
MAX_TTL_SECONDS: Final = 28 * 24 * 3600


def _require_identifier(name: str, value: str | None) -> None:
    if value is not None and _IDENTIFIER.fullmatch(value) is None:
        raise ValueError(f"{name} must be an identifier ([A-Za-z0-9_-:.], 1-128 characters)")


class WebPushSubscription(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A browser's `PushSubscription` (W3C Push API): where to POST and the keys to encrypt to."""

    endpoint: str
    p256dh: str  # base64url, the user agent's P-256 public key (uncompressed point)
    auth: str  # base64url, 16-byte authentication secret

    def __repr__(self) -> str:
        return "WebPushSubscription(<redacted>)"


class MessageData(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Identifiers the app or dashboard uses to open the right screen and to deduplicate.

    Only identifiers, by construction: there is no free-text field to put PHI in.
    """

    check_in_id: str | None = None
    alert_id: str | None = None
    task_id: str | None = None

    def __post_init__(self) -> None:
        _require_identifier("check_in_id", self.check_in_id)
        _require_identifier("alert_id", self.alert_id)
        _require_identifier("task_id", self.task_id)

    def as_strings(self) -> dict[str, str]:
        return {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One notification to one recipient over one channel, as the outbox stores it.

    Title and body are not fields: they come from `templates` by `kind`, so no caller can put
    free text, answers, scores or names into a notification.
    """

    id: str
    idempotency_key: str
    channel: Channel
    # E-mail address, phone number (E.164), device token, webhook endpoint name or a Web Push
    # subscription. Contact details are PHI: never logged, see `__repr__`.
    recipient: str | WebPushSubscription
    kind: MessageKind
    data: MessageData = msgspec.field(default_factory=MessageData)
    # Lets the device replace an older notification for the same thing instead of stacking a
    # duplicate (APNs apns-collapse-id, FCM collapse_key, Web Push Topic). Defaults per kind+id.
    collapse_key: str | None = None
    urgency: Urgency = Urgency.NORMAL
    ttl_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        _require_identifier("id", self.id)
        _require_identifier("idempotency_key", self.idempotency_key)
        _require_identifier("collapse_key", self.collapse_key)
        if not 0 <= self.ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"ttl_seconds must be between 0 and {MAX_TTL_SECONDS}")

    def __repr__(self) -> str:
        return (
            f"Message(id={self.id!r}, channel={self.channel.value!r}, kind={self.kind.value!r}, "
            f"recipient=<redacted>)"
        )

    @property
    def template(self) -> Template:
        return template_for(self.kind)

    @property
    def title(self) -> str:
        return self.template.title

    @property
    def body(self) -> str:
        return self.template.body

    @property
    def audience(self) -> Audience:
        return self.template.audience

    @property
    def effective_collapse_key(self) -> str:
        if self.collapse_key is not None:
            return self.collapse_key
        subject = self.data.check_in_id or self.data.alert_id or self.data.task_id or self.id
        return f"{self.kind.value}:{subject}"

    def payload_fields(self) -> dict[str, str]:
        """The flat, string-only data every push payload carries (FCM data values must be
        strings): what the app needs to dedupe and open the right screen."""
        return {
            "message_id": self.id,
            "kind": self.kind.value,
            **self.data.as_strings(),
        }


def bounded_key(key: str, limit: int) -> str:
    """`key` if it fits the provider's limit, else a stable digest of it (APNs collapse ids are at
    most 64 bytes, Web Push topics 32 characters)."""
    if len(key.encode()) <= limit:
        return key
    return hashlib.sha256(key.encode()).hexdigest()[:limit]


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"  # the receiver itself confirmed (webhook 2xx, console written)
    ACCEPTED = "accepted"  # a provider queued it for the device or mailbox
    RETRYABLE_FAILURE = "retryable_failure"
    PERMANENT_FAILURE = "permanent_failure"


class FailureReason(StrEnum):
    """Why a send failed, in words safe for logs and dashboards (never provider free text)."""

    TIMEOUT = "timeout"
    CONNECTION_FAILED = "connection_failed"
    TLS_FAILED = "tls_failed"
    PROVIDER_UNAVAILABLE = "provider_unavailable"  # 5xx
    RATE_LIMITED = "rate_limited"  # 429
    AUTH_FAILED = "auth_failed"  # our credentials were refused
    MISCONFIGURED = "misconfigured"  # channel not configured, unknown endpoint, bad key
    TOKEN_INVALID = "token_invalid"  # noqa: S105  # device token / subscription gone: drop it
    RECIPIENT_INVALID = "recipient_invalid"  # address or number refused: fix the contact
    REJECTED = "rejected"  # the provider refused this request as malformed
    PAYLOAD_TOO_LARGE = "payload_too_large"
    PROTOCOL_ERROR = "protocol_error"  # the provider answered something we cannot read


class Receipt(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    message_id: str
    channel: Channel
    status: DeliveryStatus
    provider_message_id: str | None = None
    reason: FailureReason | None = None
    # Seconds the provider asked us to wait (Retry-After), for the dispatcher's backoff.
    retry_after_seconds: float | None = None
    http_status: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in (DeliveryStatus.DELIVERED, DeliveryStatus.ACCEPTED)

    @property
    def retryable(self) -> bool:
        return self.status is DeliveryStatus.RETRYABLE_FAILURE


# Failures about our own setup (credentials, configuration, TLS trust) or the provider's health
# are retried: the message is fine and will go once the operator or the provider recovers, and
# the dispatcher's attempt cap bounds the wait. Failures about this message or its recipient are
# permanent: sending the same request again cannot succeed.
RETRYABLE_REASONS: Final = frozenset(
    {
        FailureReason.TIMEOUT,
        FailureReason.CONNECTION_FAILED,
        FailureReason.TLS_FAILED,
        FailureReason.PROVIDER_UNAVAILABLE,
        FailureReason.RATE_LIMITED,
        FailureReason.AUTH_FAILED,
        FailureReason.MISCONFIGURED,
        # A 2xx we cannot read may still have been accepted; at-least-once prefers a resend.
        FailureReason.PROTOCOL_ERROR,
    }
)


class DeliveryError(Exception):
    """A classified delivery failure; adapters raise it internally, `send` turns it into a receipt.

    The message is built only from the reason and status code, so it is safe to log.
    """

    message_is_safe_to_log = True

    def __init__(
        self,
        reason: FailureReason,
        *,
        http_status: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        self.reason = reason
        self.http_status = http_status
        self.retry_after_seconds = retry_after_seconds
        status = f" (HTTP {http_status})" if http_status is not None else ""
        super().__init__(f"{reason.value}{status}")

    @property
    def retryable(self) -> bool:
        return self.reason in RETRYABLE_REASONS

    def receipt(self, message: Message, channel: Channel) -> Receipt:
        return Receipt(
            message_id=message.id,
            channel=channel,
            status=(
                DeliveryStatus.RETRYABLE_FAILURE
                if self.retryable
                else DeliveryStatus.PERMANENT_FAILURE
            ),
            reason=self.reason,
            retry_after_seconds=self.retry_after_seconds,
            http_status=self.http_status,
        )


class Notifier(Protocol):
    """One delivery channel. `send` never raises for a delivery failure; it returns a receipt."""

    channel: Channel

    async def send(self, message: Message) -> Receipt: ...

    async def aclose(self) -> None: ...


def accepted(
    message: Message,
    channel: Channel,
    *,
    provider_message_id: str | None,
    delivered: bool = False,
    http_status: int | None = None,
) -> Receipt:
    return Receipt(
        message_id=message.id,
        channel=channel,
        status=DeliveryStatus.DELIVERED if delivered else DeliveryStatus.ACCEPTED,
        provider_message_id=provider_message_id,
        http_status=http_status,
    )
