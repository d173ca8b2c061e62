import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifications.base import Channel, Clock, DeliveryStatus, FailureReason, Urgency
from notifications.push.apns import ApnsConfig, ApnsNotifier, apns_id_for
from tests.notifications.conftest import assert_no_phi, make_message
from tests.notifications.servers import (
    FakeServer,
    Recorded,
    Reply,
    TlsFiles,
    serving,
    unused_port,
)

TEAM = "TEAM123456"
KEY_ID = "KEY7654321"
TOPIC = "org.interlude.companion"
GOOD_TOKEN = "a1" * 32


@dataclass
class FakeApns:
    """Checks what APNs checks: HTTP/2, a fresh ES256 provider token, topic and push headers."""

    public_key: ec.EllipticCurvePublicKey
    delivered: list[tuple[Recorded, dict[str, Any]]] = field(default_factory=list)
    tokens_seen: set[str] = field(default_factory=set)
    expire_tokens_issued_before: float = 0.0

    def __post_init__(self) -> None:
        self.server = FakeServer(self.handle)

    async def handle(self, request: Recorded) -> Reply:
        if request.http_version != "2":
            return Reply.json(400, {"reason": "BadHTTPVersion"})  # not an APNs reason; fails test
        auth = request.headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return Reply.json(403, {"reason": "MissingProviderToken"})
        token = auth.removeprefix("bearer ")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                # The tests move the sender's clock forward; age is judged by the rule below.
                options={"require": ["iss", "iat"], "verify_aud": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return Reply.json(403, {"reason": "InvalidProviderToken"})
        if header.get("kid") != KEY_ID or claims["iss"] != TEAM:
            return Reply.json(403, {"reason": "InvalidProviderToken"})
        if claims["iat"] < self.expire_tokens_issued_before:
            return Reply.json(403, {"reason": "ExpiredProviderToken"})
        self.tokens_seen.add(token)
        headers = request.headers
        if headers.get("apns-topic") != TOPIC:
            return Reply.json(400, {"reason": "DeviceTokenNotForTopic"})
        if headers.get("apns-push-type") != "alert" or headers.get("apns-priority") not in (
            "5",
            "10",
        ):
            return Reply.json(400, {"reason": "InvalidPushType"})
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return Reply.json(400, {"reason": "BadCollapseId"})
        apns_id = headers.get("apns-id", "")
        try:
            uuid.UUID(apns_id)
        except ValueError:
            return Reply.json(400, {"reason": "BadMessageId"})
        if not headers.get("apns-expiration", "").isdigit():
            return Reply.json(400, {"reason": "BadExpirationDate"})
        device = request.path.removeprefix("/3/device/")
        if device.startswith("dead"):
            return Reply.json(410, {"reason": "Unregistered", "timestamp": 1700000000000})
        if device.startswith("bad"):
            return Reply.json(400, {"reason": "BadDeviceToken"})
        payload = request.json()
        if len(request.body) > 4096:
            return Reply.json(413, {"reason": "PayloadTooLarge"})
        self.delivered.append((request, payload))
        return Reply(200, headers={"apns-id": apns_id})


@pytest.fixture(scope="module")
def p8_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
async def apns(
    p8_key: ec.EllipticCurvePrivateKey, tls_files: TlsFiles
) -> AsyncIterator[tuple[FakeApns, str]]:
    fake = FakeApns(p8_key.public_key())
    async with serving(fake.server, tls_files) as base:
        yield fake, base


def notifier_for(
    base: str,
    key: ec.EllipticCurvePrivateKey,
    tls: TlsFiles,
    *,
    clock: Clock | None = None,
    timeout: float = 5.0,
) -> ApnsNotifier:
    config = ApnsConfig(
        team_id=TEAM,
        key_id=KEY_ID,
        private_key=pem(key),
        topic=TOPIC,
        base_url=base,
        ca_file=tls.ca_file,
        timeout_seconds=timeout,
    )
    if clock is None:
        return ApnsNotifier(config)
    return ApnsNotifier(config, clock=clock)


async def test_sends_an_alert_over_http2_with_a_cached_provider_token(
    apns: tuple[FakeApns, str], p8_key: ec.EllipticCurvePrivateKey, tls_files: TlsFiles
) -> None:
    fake, base = apns
    notifier = notifier_for(base, p8_key, tls_files)
    messages = [make_message(Channel.APNS, GOOD_TOKEN, urgency=Urgency.HIGH) for _ in range(3)]
    receipts = [await notifier.send(m) for m in messages]
    await notifier.aclose()

    assert [r.status for r in receipts] == [DeliveryStatus.ACCEPTED] * 3
    assert receipts[0].provider_message_id == apns_id_for(messages[0].idempotency_key)
    assert notifier.tokens.issued == 1
    assert len(fake.tokens_seen) == 1
    request, payload = fake.delivered[0]
    assert request.path == f"/3/device/{GOOD_TOKEN}"
    assert request.scheme == "https"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-collapse-id"] == messages[0].effective_collapse_key
    assert payload["aps"]["alert"] == {"title": "You have a new check-in", "body": messages[0].body}
    assert payload["check_in_id"] == messages[0].data.check_in_id
    assert_no_phi(payload, messages[0], also_allowed=("default",))


async def test_the_same_message_resent_keeps_its_apns_id(
    apns: tuple[FakeApns, str], p8_key: ec.EllipticCurvePrivateKey, tls_files: TlsFiles
) -> None:
    fake, base = apns
    notifier = notifier_for(base, p8_key, tls_files)
    message = make_message(Channel.APNS, GOOD_TOKEN, urgency=Urgency.NORMAL)
    await notifier.send(message)
    await notifier.send(message)
    await notifier.aclose()
    ids = {request.headers["apns-id"] for request, _ in fake.delivered}
    assert len(ids) == 1
    assert fake.delivered[0][0].headers["apns-priority"] == "5"


async def test_the_provider_token_is_refreshed_when_it_ages(
    apns: tuple[FakeApns, str], p8_key: ec.EllipticCurvePrivateKey, tls_files: TlsFiles
) -> None:
    fake, base = apns
    now = [datetime.now(UTC)]
    notifier = notifier_for(base, p8_key, tls_files, clock=lambda: now[0])
    await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))
    now[0] += timedelta(minutes=49)
    await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))
    assert notifier.tokens.issued == 1
    now[0] += timedelta(minutes=2)
    await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))
    await notifier.aclose()
    assert notifier.tokens.issued == 2
    assert len(fake.delivered) == 3


async def test_an_expired_provider_token_is_replaced_and_the_send_retried_once(
    apns: tuple[FakeApns, str], p8_key: ec.EllipticCurvePrivateKey, tls_files: TlsFiles
) -> None:
    fake, base = apns
    now = [datetime.now(UTC)]
    notifier = notifier_for(base, p8_key, tls_files, clock=lambda: now[0])
    assert (await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))).succeeded
    # APNs now considers every token issued up to this second expired.
    now[0] += timedelta(seconds=2)
    fake.expire_tokens_issued_before = now[0].timestamp() - 1
    receipt = await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))
    await notifier.aclose()
    assert receipt.succeeded
    assert notifier.tokens.issued == 2


@pytest.mark.parametrize("token", ["dead" + "0" * 60, "bad" + "0" * 61])
async def test_an_unregistered_or_bad_device_token_is_permanent(
    apns: tuple[FakeApns, str],
    p8_key: ec.EllipticCurvePrivateKey,
    tls_files: TlsFiles,
    token: str,
) -> None:
    _, base = apns
    notifier = notifier_for(base, p8_key, tls_files)
    receipt = await notifier.send(make_message(Channel.APNS, token))
    await notifier.aclose()
    assert receipt.status is DeliveryStatus.PERMANENT_FAILURE
    assert receipt.reason is FailureReason.TOKEN_INVALID


async def test_a_foreign_signing_key_is_an_auth_failure(
    apns: tuple[FakeApns, str], tls_files: TlsFiles
) -> None:
    fake, base = apns
    notifier = notifier_for(base, ec.generate_private_key(ec.SECP256R1()), tls_files)
    receipt = await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.AUTH_FAILED, True)
    assert fake.delivered == []


@pytest.mark.parametrize(
    ("reply", "reason", "retry_after"),
    [
        (Reply.json(429, {"reason": "TooManyRequests"}), FailureReason.RATE_LIMITED, None),
        (
            Reply.json(503, {"reason": "ServiceUnavailable"}, {"retry-after": "12"}),
            FailureReason.PROVIDER_UNAVAILABLE,
            12,
        ),
        (
            Reply.json(500, {"reason": "InternalServerError"}),
            FailureReason.PROVIDER_UNAVAILABLE,
            None,
        ),
    ],
)
async def test_apns_trouble_is_retryable(
    apns: tuple[FakeApns, str],
    p8_key: ec.EllipticCurvePrivateKey,
    tls_files: TlsFiles,
    reply: Reply,
    reason: FailureReason,
    retry_after: float | None,
) -> None:
    fake, base = apns
    fake.server.queued.append(reply)
    notifier = notifier_for(base, p8_key, tls_files)
    receipt = await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))
    await notifier.aclose()
    assert receipt.status is DeliveryStatus.RETRYABLE_FAILURE
    assert (receipt.reason, receipt.retry_after_seconds) == (reason, retry_after)


async def test_a_silent_apns_times_out(
    apns: tuple[FakeApns, str], p8_key: ec.EllipticCurvePrivateKey, tls_files: TlsFiles
) -> None:
    fake, base = apns
    fake.server.hold = True
    notifier = notifier_for(base, p8_key, tls_files, timeout=0.3)
    receipt = await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.TIMEOUT, True)


async def test_an_unreachable_apns_is_retryable(
    p8_key: ec.EllipticCurvePrivateKey, tls_files: TlsFiles
) -> None:
    notifier = notifier_for(f"https://127.0.0.1:{unused_port()}", p8_key, tls_files)
    receipt = await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.CONNECTION_FAILED, True)


async def test_an_untrusted_apns_certificate_is_a_tls_failure(
    apns: tuple[FakeApns, str], p8_key: ec.EllipticCurvePrivateKey, tls_files: TlsFiles
) -> None:
    fake, base = apns
    notifier = ApnsNotifier(
        ApnsConfig(team_id=TEAM, key_id=KEY_ID, private_key=pem(p8_key), topic=TOPIC, base_url=base)
    )
    receipt = await notifier.send(make_message(Channel.APNS, GOOD_TOKEN))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.TLS_FAILED, True)
    assert fake.server.requests == []


async def test_a_token_that_could_escape_the_path_is_refused_locally(
    p8_key: ec.EllipticCurvePrivateKey, tls_files: TlsFiles
) -> None:
    notifier = notifier_for("https://127.0.0.1:9", p8_key, tls_files)
    receipt = await notifier.send(make_message(Channel.APNS, "../../admin"))
    await notifier.aclose()
    assert receipt.reason is FailureReason.TOKEN_INVALID
