import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifications.base import (
    Channel,
    DeliveryStatus,
    FailureReason,
    Urgency,
    WebPushSubscription,
)
from notifications.push.webpush import (
    WebPushConfig,
    WebPushNotifier,
    b64url_decode,
    b64url_encode,
    load_vapid_key,
    topic_for,
)
from tests.notifications.conftest import assert_no_phi, make_message
from tests.notifications.servers import FakeServer, Recorded, Reply, serving, unused_port

SUBJECT = "mailto:ops@clinic.example"
VAPID = re.compile(r"^vapid t=(?P<t>[^,\s]+), k=(?P<k>[A-Za-z0-9_-]+)$")
TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def raw_private(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))


def raw_public(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url_encode(
        key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )


@dataclass
class Browser:
    """A user agent's subscription keys, able to decrypt what the push service hands it."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, endpoint: str) -> WebPushSubscription:
        return WebPushSubscription(
            endpoint=endpoint, p256dh=raw_public(self.key), auth=b64url_encode(self.auth)
        )

    def decrypt(self, body: bytes) -> Any:
        plaintext = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plaintext)


@dataclass
class FakePushService:
    """RFC 8030 push service: checks VAPID (RFC 8292) and the required headers, stores bodies."""

    application_server_key: str
    origin: str = ""
    accepted: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = FakeServer(self.handle)

    async def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or not request.path.startswith("/push/"):
            return Reply(404)
        match = VAPID.match(request.headers.get("authorization", ""))
        if match is None or match["k"] != self.application_server_key:
            return Reply(401)
        public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b64url_decode(match["k"])
        )
        try:
            claims = jwt.decode(
                match["t"],
                public,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["aud", "exp", "sub"]},
            )
        except jwt.InvalidTokenError:
            return Reply(403)
        if claims["exp"] > time.time() + 24 * 3600 or not claims["sub"].startswith("mailto:"):
            return Reply(403)
        headers = request.headers
        if (
            not headers.get("ttl", "").isdigit()
            or headers.get("content-encoding") != "aes128gcm"
            or headers.get("urgency") not in ("very-low", "low", "normal", "high")
            or not TOPIC.match(headers.get("topic", ""))
        ):
            return Reply(400)
        if len(request.body) > 4096:
            return Reply(413)
        if request.path.startswith("/push/gone"):
            return Reply(410)
        self.accepted.append(request)
        return Reply(
            201, headers={"location": f"{self.origin}/message/{len(self.accepted)}", "ttl": "0"}
        )


@pytest.fixture(scope="module")
def vapid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def push_service(vapid_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[FakePushService]:
    fake = FakePushService(raw_public(vapid_key))
    async with serving(fake.server) as base:
        fake.origin = base
        yield fake


def notifier_for(key: ec.EllipticCurvePrivateKey, timeout: float = 5.0) -> WebPushNotifier:
    return WebPushNotifier(
        WebPushConfig(
            vapid_private_key=raw_private(key), vapid_subject=SUBJECT, timeout_seconds=timeout
        )
    )


async def test_the_browser_can_decrypt_what_the_push_service_received(
    push_service: FakePushService, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    browser = Browser()
    notifier = notifier_for(vapid_key)
    message = make_message(
        Channel.WEB_PUSH,
        browser.subscription(f"{push_service.origin}/push/sub-1"),
        urgency=Urgency.HIGH,
        ttl_seconds=900,
    )
    receipt = await notifier.send(message)
    await notifier.aclose()

    assert receipt.status is DeliveryStatus.ACCEPTED
    assert receipt.provider_message_id == f"{push_service.origin}/message/1"
    [request] = push_service.accepted
    assert request.headers["ttl"] == "900"
    assert request.headers["urgency"] == "high"
    assert request.headers["topic"] == topic_for(message.effective_collapse_key)
    payload = browser.decrypt(request.body)
    assert payload == {
        "title": "You have a new check-in",
        "body": message.body,
        "data": message.payload_fields(),
    }
    assert_no_phi(payload, message)


async def test_another_browser_cannot_decrypt_it(
    push_service: FakePushService, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    notifier = notifier_for(vapid_key)
    browser = Browser()
    await notifier.send(
        make_message(Channel.WEB_PUSH, browser.subscription(f"{push_service.origin}/push/s"))
    )
    await notifier.aclose()
    with pytest.raises(http_ece.ECEException):
        Browser().decrypt(push_service.accepted[0].body)


async def test_each_message_uses_a_fresh_ephemeral_key_and_salt(
    push_service: FakePushService, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    notifier = notifier_for(vapid_key)
    browser = Browser()
    message = make_message(Channel.WEB_PUSH, browser.subscription(f"{push_service.origin}/push/s"))
    await notifier.send(message)
    await notifier.send(message)
    await notifier.aclose()
    first, second = (r.body for r in push_service.accepted)
    # aes128gcm header: salt(16) | rs(4) | idlen(1) | keyid (the sender's ephemeral public key)
    assert first[:16] != second[:16]
    assert first[21:86] != second[21:86]
    assert browser.decrypt(first) == browser.decrypt(second)


async def test_a_pem_vapid_key_works_too(
    push_service: FakePushService, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    pem = vapid_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    notifier = WebPushNotifier(WebPushConfig(vapid_private_key=pem, vapid_subject=SUBJECT))
    receipt = await notifier.send(
        make_message(Channel.WEB_PUSH, Browser().subscription(f"{push_service.origin}/push/p"))
    )
    await notifier.aclose()
    assert receipt.succeeded
    assert load_vapid_key(pem).private_numbers() == vapid_key.private_numbers()


async def test_a_vapid_key_the_subscription_was_not_made_with_is_refused(
    push_service: FakePushService,
) -> None:
    notifier = notifier_for(ec.generate_private_key(ec.SECP256R1()))
    receipt = await notifier.send(
        make_message(Channel.WEB_PUSH, Browser().subscription(f"{push_service.origin}/push/s"))
    )
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.AUTH_FAILED, True)
    assert push_service.accepted == []


async def test_an_expired_subscription_is_permanent(
    push_service: FakePushService, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    notifier = notifier_for(vapid_key)
    receipt = await notifier.send(
        make_message(Channel.WEB_PUSH, Browser().subscription(f"{push_service.origin}/push/gone-1"))
    )
    await notifier.aclose()
    assert receipt.status is DeliveryStatus.PERMANENT_FAILURE
    assert (receipt.reason, receipt.http_status) == (FailureReason.TOKEN_INVALID, 410)


async def test_a_subscription_with_broken_keys_is_permanent_and_never_sent(
    push_service: FakePushService, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    notifier = notifier_for(vapid_key)
    broken = WebPushSubscription(
        endpoint=f"{push_service.origin}/push/x",
        p256dh=b64url_encode(b"\x04" + b"\x00" * 64),
        auth="AAAA",
    )
    receipt = await notifier.send(make_message(Channel.WEB_PUSH, broken))
    await notifier.aclose()
    assert receipt.reason is FailureReason.TOKEN_INVALID
    assert push_service.server.requests == []


@pytest.mark.parametrize(
    ("reply", "reason", "retry_after"),
    [
        (Reply(429, headers={"retry-after": "60"}), FailureReason.RATE_LIMITED, 60),
        (Reply(500), FailureReason.PROVIDER_UNAVAILABLE, None),
        (Reply(503), FailureReason.PROVIDER_UNAVAILABLE, None),
    ],
)
async def test_push_service_trouble_is_retryable(
    push_service: FakePushService,
    vapid_key: ec.EllipticCurvePrivateKey,
    reply: Reply,
    reason: FailureReason,
    retry_after: float | None,
) -> None:
    push_service.server.queued.append(reply)
    notifier = notifier_for(vapid_key)
    receipt = await notifier.send(
        make_message(Channel.WEB_PUSH, Browser().subscription(f"{push_service.origin}/push/s"))
    )
    await notifier.aclose()
    assert receipt.status is DeliveryStatus.RETRYABLE_FAILURE
    assert (receipt.reason, receipt.retry_after_seconds) == (reason, retry_after)


async def test_a_silent_push_service_times_out(
    push_service: FakePushService, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    push_service.server.hold = True
    notifier = notifier_for(vapid_key, timeout=0.3)
    receipt = await notifier.send(
        make_message(Channel.WEB_PUSH, Browser().subscription(f"{push_service.origin}/push/s"))
    )
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.TIMEOUT, True)


async def test_an_unreachable_push_service_is_retryable(
    vapid_key: ec.EllipticCurvePrivateKey,
) -> None:
    notifier = notifier_for(vapid_key)
    endpoint = f"http://127.0.0.1:{unused_port()}/push/s"
    receipt = await notifier.send(make_message(Channel.WEB_PUSH, Browser().subscription(endpoint)))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.CONNECTION_FAILED, True)


def test_topics_fit_rfc_8030() -> None:
    assert topic_for("short_key-1") == "short_key-1"
    long = topic_for("check_in_due:0c16ba7a-559d-4b26-9c7d-83af01bd255c")
    assert TOPIC.match(long)
    assert long == topic_for("check_in_due:0c16ba7a-559d-4b26-9c7d-83af01bd255c")
