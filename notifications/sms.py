"""SMS through a Twilio-style HTTP API, for patients who opted in.

`POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `From` (or
`MessagingServiceSid`) and `Body`, HTTP basic auth with the account SID (or an API key SID) and
secret; 201 returns the message `sid`. Errors carry a numeric `code`; the ones below mean the
number itself cannot receive (twilio.com/docs/api/errors). The idempotency key is sent in a
header for providers that honour one (Telnyx documents `Idempotency-Key`); Twilio's Messages API
does not document one, so with Twilio a resend after a crash can duplicate an SMS, and the text
is short and generic so that a duplicate is harmless.
"""

from datetime import datetime
from typing import Final

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

# 21211 invalid 'To'; 21214 not reachable; 21408 region not enabled; 21610 recipient replied STOP;
# 21612 cannot route to this number; 21614 not a mobile number.
_RECIPIENT_CODES: Final = frozenset({21211, 21214, 21408, 21610, 21612, 21614})
# One GSM-7 segment: longer texts are split and billed per part, and may arrive out of order.
SEGMENT_LENGTH: Final = 160


class SmsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    api_key_sid: str | None = None  # basic-auth user instead of the account SID, if set
    base_url: str = "https://api.twilio.com"
    idempotency_header: str = "Idempotency-Key"
    timeout_seconds: float = 10.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("set exactly one of from_number and messaging_service_sid")

    def __repr__(self) -> str:
        return f"SmsConfig(account_sid={self.account_sid!r}, auth_token=<redacted>)"


def sms_text(message: Message) -> str:
    return f"Interlude: {message.title}. {message.body}"


class _SmsError(msgspec.Struct):
    code: int | None = None


class _SmsCreated(msgspec.Struct):
    sid: str


def classify_sms_error(
    status: int, content: bytes, retry_after: str | None, now: datetime
) -> DeliveryError:
    try:
        code = msgspec.json.decode(content, type=_SmsError).code
    except msgspec.DecodeError:
        code = None
    if code in _RECIPIENT_CODES:
        return DeliveryError(FailureReason.RECIPIENT_INVALID, http_status=status)
    error = classify_status(status, retry_after=retry_after, now=now)
    return error or DeliveryError(FailureReason.PROTOCOL_ERROR, http_status=status)


class SmsNotifier:
    channel = Channel.SMS

    def __init__(
        self,
        config: SmsConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._config = config
        self._client = client or build_client(
            timeout_seconds=config.timeout_seconds, ca_file=config.ca_file
        )
        self._clock = clock
        base = config.base_url.rstrip("/")
        self._url = f"{base}/2010-04-01/Accounts/{config.account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(config.api_key_sid or config.account_sid, config.auth_token)

    async def send(self, message: Message) -> Receipt:
        return await deliver(message, self.channel, lambda: self._send(message))

    async def _send(self, message: Message) -> Receipt:
        if not isinstance(message.recipient, str):
            raise DeliveryError(FailureReason.RECIPIENT_INVALID)
        form = {"To": message.recipient, "Body": sms_text(message)}
        if self._config.messaging_service_sid is not None:
            form["MessagingServiceSid"] = self._config.messaging_service_sid
        elif self._config.from_number is not None:
            form["From"] = self._config.from_number
        response = await self._client.post(
            self._url,
            data=form,
            auth=self._auth,
            headers={self._config.idempotency_header: message.idempotency_key},
        )
        if not 200 <= response.status_code < 300:
            raise classify_sms_error(
                response.status_code,
                response.content,
                response.headers.get("Retry-After"),
                self._clock(),
            )
        try:
            sid = msgspec.json.decode(response.content, type=_SmsCreated).sid
        except msgspec.DecodeError as error:
            raise DeliveryError(FailureReason.PROTOCOL_ERROR) from error
        return accepted(
            message, self.channel, provider_message_id=sid, http_status=response.status_code
        )

    async def aclose(self) -> None:
        await self._client.aclose()
