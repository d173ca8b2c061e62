import json
import re
import secrets
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from notifications.base import Channel, DeliveryStatus, FailureReason, Urgency
from notifications.push.fcm import (
    FCM_SCOPE,
    FcmConfig,
    FcmNotifier,
    ServiceAccount,
    classify_fcm_error,
    load_service_account,
)
from tests.notifications.conftest import assert_no_phi, make_message
from tests.notifications.servers import FakeServer, Recorded, Reply, serving, unused_port

PROJECT = "interlude-test"
KEY_ID = "key-1"
CLIENT_EMAIL = "push@interlude-test.iam.gserviceaccount.com"
TTL = re.compile(r"^\d+(\.\d{1,9})?s$")


def fcm_error(status: int, code: str, text: str = "error", status_name: str = "X") -> Reply:
    return Reply.json(
        status,
        {
            "error": {
                "code": status,
                "message": text,
                "status": status_name,
                "details": [
                    {
                        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                        "errorCode": code,
                    }
                ],
            }
        },
    )


@dataclass
class FakeGoogle:
    """The OAuth token endpoint and the FCM v1 send endpoint, checking what Google checks."""

    public_key: rsa.RSAPublicKey
    token_lifetime: int = 3600
    base_url: str = ""
    issued: set[str] = field(default_factory=set)
    token_requests: int = 0
    delivered: list[dict[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = FakeServer(self.handle)

    async def handle(self, request: Recorded) -> Reply:
        if request.path == "/token":
            return self.token(request)
        if request.path == f"/v1/projects/{PROJECT}/messages:send":
            return self.send(request)
        return Reply(404)

    def token(self, request: Recorded) -> Reply:
        self.token_requests += 1
        if request.method != "POST" or not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return Reply.json(400, {"error": "invalid_request"})
        form = dict(urllib.parse.parse_qsl(request.body.decode()))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply.json(400, {"error": "unsupported_grant_type"})
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                audience=f"{self.base_url}/token",
                issuer=CLIENT_EMAIL,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.InvalidTokenError:
            return Reply.json(400, {"error": "invalid_grant"})
        if jwt.get_unverified_header(assertion).get("kid") != KEY_ID:
            return Reply.json(400, {"error": "invalid_grant"})
        if claims["scope"] != FCM_SCOPE or claims["exp"] - claims["iat"] > 3600:
            return Reply.json(400, {"error": "invalid_scope"})
        token = f"ya29.{secrets.token_urlsafe(16)}"
        self.issued.add(token)
        return Reply.json(
            200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    def send(self, request: Recorded) -> Reply:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.issued:
            return Reply.json(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
        if not request.headers.get("content-type", "").startswith("application/json"):
            return fcm_error(400, "INVALID_ARGUMENT")
        message = request.json()["message"]
        data = message["data"]
        android = message["android"]
        problems = [
            not isinstance(message.get("token"), str),
            set(message["notification"]) != {"title", "body"},
            not all(isinstance(v, str) for v in data.values()),
            android["priority"] not in ("HIGH", "NORMAL"),
            not TTL.match(android["ttl"]),
            len(message["apns"]["headers"]["apns-collapse-id"].encode()) > 64,
        ]
        if any(problems):
            return fcm_error(400, "INVALID_ARGUMENT")
        if message["token"].startswith("uninstalled"):
            return fcm_error(404, "UNREGISTERED", "Requested entity was not found.", "NOT_FOUND")
        if message["token"].startswith("garbage"):
            return fcm_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
            )
        self.delivered.append(message)
        return Reply.json(200, {"name": f"projects/{PROJECT}/messages/0:{len(self.delivered)}"})


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account(key: rsa.RSAPrivateKey, base_url: str) -> ServiceAccount:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return ServiceAccount(
        project_id=PROJECT,
        private_key_id=KEY_ID,
        private_key=pem,
        client_email=CLIENT_EMAIL,
        token_uri=f"{base_url}/token",
    )


@pytest.fixture
async def google(rsa_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeGoogle]:
    fake = FakeGoogle(rsa_key.public_key())
    async with serving(fake.server) as base:
        fake.base_url = base
        yield fake


def notifier_for(google: FakeGoogle, key: rsa.RSAPrivateKey, timeout: float = 5.0) -> FcmNotifier:
    return FcmNotifier(
        FcmConfig(
            service_account=service_account(key, google.base_url),
            base_url=google.base_url,
            timeout_seconds=timeout,
        )
    )


async def test_sends_a_v1_message_with_an_oauth_token_cached_across_sends(
    google: FakeGoogle, rsa_key: rsa.RSAPrivateKey
) -> None:
    notifier = notifier_for(google, rsa_key)
    messages = [
        make_message(Channel.FCM, f"device-token-{i}", urgency=Urgency.HIGH, ttl_seconds=7200)
        for i in range(3)
    ]
    receipts = [await notifier.send(m) for m in messages]
    await notifier.aclose()

    assert [r.status for r in receipts] == [DeliveryStatus.ACCEPTED] * 3
    assert receipts[0].provider_message_id == f"projects/{PROJECT}/messages/0:1"
    assert google.token_requests == 1
    sent = google.delivered[0]
    assert sent["token"] == "device-token-0"
    assert sent["android"] == {
        "collapse_key": messages[0].effective_collapse_key,
        "priority": "HIGH",
        "ttl": "7200s",
    }
    assert sent["data"] == {
        "message_id": messages[0].id,
        "kind": "check_in_due",
        "check_in_id": messages[0].data.check_in_id,
    }
    content = {k: v for k, v in sent.items() if k not in ("token", "android", "apns")}
    assert_no_phi(content, messages[0])


async def test_a_token_near_expiry_is_refreshed(
    google: FakeGoogle, rsa_key: rsa.RSAPrivateKey
) -> None:
    google.token_lifetime = 60  # inside the refresh margin: every send needs a fresh token
    notifier = notifier_for(google, rsa_key)
    for i in range(2):
        assert (await notifier.send(make_message(Channel.FCM, f"device-{i}"))).succeeded
    await notifier.aclose()
    assert google.token_requests == 2


async def test_a_revoked_access_token_is_replaced_once(
    google: FakeGoogle, rsa_key: rsa.RSAPrivateKey
) -> None:
    notifier = notifier_for(google, rsa_key)
    assert (await notifier.send(make_message(Channel.FCM, "device-a"))).succeeded
    google.issued.clear()  # Google revoked every token it gave us
    receipt = await notifier.send(make_message(Channel.FCM, "device-b"))
    await notifier.aclose()
    assert receipt.succeeded
    assert google.token_requests == 2


async def test_a_key_google_does_not_accept_is_an_auth_failure(google: FakeGoogle) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    notifier = notifier_for(google, stranger)
    receipt = await notifier.send(make_message(Channel.FCM, "device-a"))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.AUTH_FAILED, True)
    assert google.delivered == []


@pytest.mark.parametrize("token", ["uninstalled-app-token", "garbage-token"])
async def test_a_dead_device_token_is_permanent_and_says_so(
    google: FakeGoogle, rsa_key: rsa.RSAPrivateKey, token: str
) -> None:
    notifier = notifier_for(google, rsa_key)
    receipt = await notifier.send(make_message(Channel.FCM, token))
    await notifier.aclose()
    assert receipt.status is DeliveryStatus.PERMANENT_FAILURE
    assert receipt.reason is FailureReason.TOKEN_INVALID


@pytest.mark.parametrize(
    ("reply", "reason", "retry_after"),
    [
        (fcm_error(429, "QUOTA_EXCEEDED"), FailureReason.RATE_LIMITED, None),
        (
            Reply(
                429,
                fcm_error(429, "QUOTA_EXCEEDED").body,
                {"content-type": "application/json", "retry-after": "42"},
            ),
            FailureReason.RATE_LIMITED,
            42,
        ),
        (fcm_error(503, "UNAVAILABLE"), FailureReason.PROVIDER_UNAVAILABLE, None),
        (fcm_error(500, "INTERNAL"), FailureReason.PROVIDER_UNAVAILABLE, None),
        (Reply(502, b"<html>bad gateway</html>"), FailureReason.PROVIDER_UNAVAILABLE, None),
    ],
)
async def test_provider_trouble_is_retryable(
    google: FakeGoogle,
    rsa_key: rsa.RSAPrivateKey,
    reply: Reply,
    reason: FailureReason,
    retry_after: float | None,
) -> None:
    notifier = notifier_for(google, rsa_key)
    await notifier.tokens.get()  # so the queued failure answers the send, not the token request
    google.server.queued.append(reply)
    receipt = await notifier.send(make_message(Channel.FCM, "device-a"))
    await notifier.aclose()
    assert receipt.status is DeliveryStatus.RETRYABLE_FAILURE
    assert (receipt.reason, receipt.retry_after_seconds) == (reason, retry_after)


async def test_a_silent_fcm_times_out(google: FakeGoogle, rsa_key: rsa.RSAPrivateKey) -> None:
    notifier = notifier_for(google, rsa_key, timeout=0.3)
    await notifier.tokens.get()
    google.server.hold = True
    receipt = await notifier.send(make_message(Channel.FCM, "device-a"))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.TIMEOUT, True)


async def test_an_unreachable_fcm_is_retryable(rsa_key: rsa.RSAPrivateKey) -> None:
    base = f"http://127.0.0.1:{unused_port()}"
    notifier = FcmNotifier(FcmConfig(service_account=service_account(rsa_key, base), base_url=base))
    receipt = await notifier.send(make_message(Channel.FCM, "device-a"))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.CONNECTION_FAILED, True)


def test_third_party_auth_errors_are_for_the_operator() -> None:
    error = classify_fcm_error(401, fcm_error(401, "THIRD_PARTY_AUTH_ERROR").body, None, _now())
    assert (error.reason, error.retryable) == (FailureReason.AUTH_FAILED, True)


def test_sender_mismatch_means_the_token_is_not_ours() -> None:
    error = classify_fcm_error(403, fcm_error(403, "SENDER_ID_MISMATCH").body, None, _now())
    assert error.reason is FailureReason.TOKEN_INVALID


def test_an_invalid_payload_is_rejected_not_blamed_on_the_token() -> None:
    body = fcm_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.data[0].value'").body
    assert classify_fcm_error(400, body, None, _now()).reason is FailureReason.REJECTED


def test_the_service_account_file_loads_and_its_repr_hides_the_key(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    account = service_account(rsa_key, "https://oauth2.example")
    path = tmp_path / "key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": account.project_id,
                "private_key_id": account.private_key_id,
                "private_key": account.private_key,
                "client_email": account.client_email,
                "client_id": "123",
                "token_uri": account.token_uri,
            }
        )
    )
    assert load_service_account(path) == account
    assert "PRIVATE KEY" not in repr(account)


def _now() -> datetime:
    return datetime.now(UTC)
