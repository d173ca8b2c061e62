"""Firebase Cloud Messaging, HTTP v1 API.

`POST {base}/v1/projects/{project_id}/messages:send` with an OAuth 2.0 access token. The token
comes from the service-account key by the JWT bearer grant (RFC 7523): we sign a JWT (RS256, `kid`
= the key id, `scope` = firebase.messaging, `aud` = the key's token_uri) and exchange it at the
token endpoint, then cache the access token until shortly before it expires, so a fan-out of
thousands of messages costs one token request. Sources: firebase.google.com/docs/cloud-messaging/
send/v1-api and .../error-codes; developers.google.com/identity/protocols/oauth2/service-account.
"""

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
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
from notifications.http import build_client, classify_status, deliver, parse_retry_after

FCM_SCOPE: Final = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google accepts assertions valid for at most one hour.
ASSERTION_LIFETIME: Final = timedelta(hours=1)
# Refresh this long before expiry, so a token never expires between the check and the request.
REFRESH_MARGIN: Final = timedelta(minutes=5)


class ServiceAccount(msgspec.Struct, frozen=True, kw_only=True):
    """The fields we use from a Google service-account key file (other fields are ignored)."""

    project_id: str
    private_key_id: str
    private_key: str  # PEM, RSA
    client_email: str
    token_uri: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)

    def __repr__(self) -> str:
        return f"ServiceAccount(project_id={self.project_id!r}, private_key=<redacted>)"


def load_service_account(path: str | Path) -> ServiceAccount:
    return msgspec.json.decode(Path(path).read_bytes(), type=ServiceAccount)


class FcmConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_account: ServiceAccount
    base_url: str = "https://fcm.googleapis.com"
    timeout_seconds: float = 10.0
    ca_file: str | None = None


class _AccessToken(msgspec.Struct, frozen=True):
    value: str
    expires_at: datetime


class _TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105


class ServiceAccountTokens:
    """OAuth 2.0 access tokens for a service account, cached until shortly before expiry."""

    def __init__(self, account: ServiceAccount, client: httpx.AsyncClient, clock: Clock) -> None:
        self._account = account
        self._client = client
        self._clock = clock
        self._token: _AccessToken | None = None
        # One refresh at a time: a fan-out must not stampede the token endpoint.
        self._lock = asyncio.Lock()

    def assertion(self, now: datetime) -> str:
        issued = int(now.timestamp())
        claims = {
            "iss": self._account.client_email,
            "scope": FCM_SCOPE,
            "aud": self._account.token_uri,
            "iat": issued,
            "exp": issued + int(ASSERTION_LIFETIME.total_seconds()),
        }
        return jwt.encode(
            claims,
            self._account.private_key,
            algorithm="RS256",
            headers={"kid": self._account.private_key_id},
        )

    def invalidate(self, value: str) -> None:
        if self._token is not None and self._token.value == value:
            self._token = None

    async def get(self) -> str:
        token = self._token
        if token is not None and self._clock() < token.expires_at - REFRESH_MARGIN:
            return token.value  # the common case: no lock, so a fan-out's sends do not queue
        async with self._lock:
            now = self._clock()
            if self._token is None or now >= self._token.expires_at - REFRESH_MARGIN:
                self._token = await self._fetch(now)
            return self._token.value

    async def _fetch(self, now: datetime) -> _AccessToken:
        response = await self._client.post(
            self._account.token_uri,
            data={"grant_type": JWT_BEARER_GRANT, "assertion": self.assertion(now)},
        )
        if response.status_code in (400, 401, 403):
            # invalid_grant / unauthorized_client: the key is revoked, wrong or the clock is off.
            raise DeliveryError(FailureReason.AUTH_FAILED, http_status=response.status_code)
        error = classify_status(
            response.status_code, retry_after=response.headers.get("Retry-After"), now=now
        )
        if error is not None:
            raise error
        try:
            token = msgspec.json.decode(response.content, type=_TokenResponse)
        except msgspec.DecodeError as decode_error:
            raise DeliveryError(FailureReason.PROTOCOL_ERROR) from decode_error
        return _AccessToken(token.access_token, now + timedelta(seconds=token.expires_in))


def fcm_request_body(message: Message, now: datetime) -> dict[str, Any]:
    """The v1 `Message` resource: a visible notification plus string data for deduplication."""
    if not isinstance(message.recipient, str):
        raise DeliveryError(FailureReason.TOKEN_INVALID)
    collapse = message.effective_collapse_key
    high = message.urgency is Urgency.HIGH
    return {
        "message": {
            "token": message.recipient,
            "notification": {"title": message.title, "body": message.body},
            "data": message.payload_fields(),
            "android": {
                "collapse_key": collapse,
                "priority": "HIGH" if high else "NORMAL",
                "ttl": f"{message.ttl_seconds}s",
            },
            # FCM forwards these to APNs for iOS devices registered through Firebase.
            "apns": {
                "headers": {
                    "apns-collapse-id": bounded_key(collapse, 64),
                    "apns-priority": "10" if high else "5",
                    "apns-expiration": str(int(now.timestamp()) + message.ttl_seconds),
                }
            },
        }
    }


class _FcmErrorBody(msgspec.Struct):
    error: dict[str, Any]


def _fcm_error_code(content: bytes) -> tuple[str | None, bool]:
    """The FcmError `errorCode` and whether a field violation names the registration token."""
    try:
        error = msgspec.json.decode(content, type=_FcmErrorBody).error
    except msgspec.DecodeError:
        return None, False
    code: str | None = None
    names_token = False
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type", "").endswith("google.firebase.fcm.v1.FcmError"):
            code = detail.get("errorCode")
        for violation in detail.get("fieldViolations", []) or []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                names_token = True
    message = error.get("message")
    if isinstance(message, str) and "registration token" in message.lower():
        names_token = True
    return code, names_token


def classify_fcm_error(
    status: int, content: bytes, retry_after: str | None, now: datetime
) -> DeliveryError:
    code, names_token = _fcm_error_code(content)
    if code in ("UNREGISTERED", "SENDER_ID_MISMATCH"):
        # The app was uninstalled or the token belongs to another Firebase project: drop it.
        return DeliveryError(FailureReason.TOKEN_INVALID, http_status=status)
    if code == "INVALID_ARGUMENT" or status == 400:
        reason = FailureReason.TOKEN_INVALID if names_token else FailureReason.REJECTED
        return DeliveryError(reason, http_status=status)
    if code == "QUOTA_EXCEEDED":
        return DeliveryError(
            FailureReason.RATE_LIMITED,
            http_status=status,
            retry_after_seconds=parse_retry_after(retry_after, now),
        )
    if code == "THIRD_PARTY_AUTH_ERROR":
        # The APNs certificate or key uploaded to Firebase was refused: the operator's to fix.
        return DeliveryError(FailureReason.AUTH_FAILED, http_status=status)
    error = classify_status(status, retry_after=retry_after, now=now)
    return error or DeliveryError(FailureReason.PROTOCOL_ERROR, http_status=status)


class _SendResponse(msgspec.Struct):
    name: str


class FcmNotifier:
    channel = Channel.FCM

    def __init__(
        self,
        config: FcmConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._config = config
        self._client = client or build_client(
            timeout_seconds=config.timeout_seconds, ca_file=config.ca_file
        )
        self._clock = clock
        self.tokens = ServiceAccountTokens(config.service_account, self._client, clock)
        base = config.base_url.rstrip("/")
        # Parsed once: httpx parses a string URL on every request.
        self._url = httpx.URL(
            f"{base}/v1/projects/{config.service_account.project_id}/messages:send"
        )

    async def send(self, message: Message) -> Receipt:
        return await deliver(message, self.channel, lambda: self._send(message))

    async def _send(self, message: Message) -> Receipt:
        body = msgspec.json.encode(fcm_request_body(message, self._clock()))
        response = await self._post(body, await self.tokens.get())
        if response.status_code == 401:
            # Our access token may have been revoked early; fetch a fresh one and try once more.
            self.tokens.invalidate(
                response.request.headers["Authorization"].removeprefix("Bearer ")
            )
            response = await self._post(body, await self.tokens.get())
        now = self._clock()
        if not 200 <= response.status_code < 300:
            raise classify_fcm_error(
                response.status_code, response.content, response.headers.get("Retry-After"), now
            )
        try:
            name = msgspec.json.decode(response.content, type=_SendResponse).name
        except msgspec.DecodeError as error:
            raise DeliveryError(FailureReason.PROTOCOL_ERROR) from error
        return accepted(
            message, self.channel, provider_message_id=name, http_status=response.status_code
        )

    async def _post(self, body: bytes, access_token: str) -> httpx.Response:
        return await self._client.post(
            self._url,
            content=body,
            headers={
                "Authorization": f"Bearer {access_token}",
                "Content-Type": "application/json; charset=UTF-8",
            },
        )

    async def aclose(self) -> None:
        await self._client.aclose()
