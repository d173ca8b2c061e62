import base64
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from notifications.base import Channel, DeliveryStatus, FailureReason
from notifications.sms import SEGMENT_LENGTH, SmsConfig, SmsNotifier, sms_text
from notifications.templates import MessageKind
from tests.notifications.conftest import make_message
from tests.notifications.servers import FakeServer, Recorded, Reply, serving, unused_port

ACCOUNT = "AC" + "0" * 32
TOKEN = "twilio-auth-token"
FROM = "+15550001111"
PATIENT = "+15557654321"


@dataclass
class FakeTwilio:
    """The Messages resource: basic auth, form fields, error codes, replay of idempotency keys."""

    sent: list[dict[str, str]] = field(default_factory=list)
    keys: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.server = FakeServer(self.handle)

    async def handle(self, request: Recorded) -> Reply:
        if request.path != f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json":
            return Reply.json(404, {"code": 20404, "status": 404})
        expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Reply.json(401, {"code": 20003, "message": "Authenticate", "status": 401})
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return Reply.json(400, {"code": 21601, "status": 400})
        form = dict(urllib.parse.parse_qsl(request.body.decode()))
        if set(form) != {"To", "From", "Body"} or not form["To"].startswith("+"):
            return Reply.json(400, {"code": 21604, "status": 400})
        if form["To"] == "+15550000000":
            return Reply.json(400, {"code": 21211, "message": "Invalid 'To'", "status": 400})
        if form["To"] == "+15550000001":
            return Reply.json(400, {"code": 21610, "message": "unsubscribed", "status": 400})
        key = request.headers.get("idempotency-key", "")
        self.keys[key] += 1
        if self.keys[key] == 1:
            self.sent.append(form)
        return Reply.json(201, {"sid": f"SM{len(self.sent):032d}", "status": "queued"})


@pytest.fixture
async def twilio() -> AsyncIterator[tuple[FakeTwilio, str]]:
    fake = FakeTwilio()
    async with serving(fake.server) as base:
        yield fake, base


def notifier_for(base: str, *, token: str = TOKEN, timeout: float = 5.0) -> SmsNotifier:
    return SmsNotifier(
        SmsConfig(
            account_sid=ACCOUNT,
            auth_token=token,
            from_number=FROM,
            base_url=base,
            timeout_seconds=timeout,
        )
    )


async def test_sends_a_short_generic_text_with_basic_auth_and_an_idempotency_key(
    twilio: tuple[FakeTwilio, str],
) -> None:
    fake, base = twilio
    notifier = notifier_for(base)
    message = make_message(Channel.SMS, PATIENT, kind=MessageKind.CHECK_IN_REMINDER)
    first = await notifier.send(message)
    again = await notifier.send(message)
    await notifier.aclose()

    assert first.status is DeliveryStatus.ACCEPTED
    assert first.provider_message_id == "SM" + "1".zfill(32)
    assert again.succeeded
    assert fake.keys == Counter({message.idempotency_key: 2})
    [form] = fake.sent
    assert form == {"To": PATIENT, "From": FROM, "Body": sms_text(message)}
    assert (
        form["Body"]
        == "Interlude: Your check-in is waiting. Open Interlude when you have a moment."
    )
    # The number travels only in the form body, never in the URL.
    assert fake.server.requests[0].path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert PATIENT not in form["Body"]


@pytest.mark.parametrize("kind", list(MessageKind))
def test_every_text_fits_one_sms_segment(kind: MessageKind) -> None:
    text = sms_text(make_message(Channel.SMS, PATIENT, kind=kind))
    assert len(text) <= SEGMENT_LENGTH
    assert text.isascii()


@pytest.mark.parametrize("number", ["+15550000000", "+15550000001"])
async def test_a_number_that_cannot_receive_is_permanent(
    twilio: tuple[FakeTwilio, str], number: str
) -> None:
    _, base = twilio
    notifier = notifier_for(base)
    receipt = await notifier.send(make_message(Channel.SMS, number))
    await notifier.aclose()
    assert receipt.status is DeliveryStatus.PERMANENT_FAILURE
    assert receipt.reason is FailureReason.RECIPIENT_INVALID


async def test_wrong_credentials_are_an_auth_failure(twilio: tuple[FakeTwilio, str]) -> None:
    fake, base = twilio
    notifier = notifier_for(base, token="wrong")
    receipt = await notifier.send(make_message(Channel.SMS, PATIENT))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.AUTH_FAILED, True)
    assert fake.sent == []


@pytest.mark.parametrize(
    ("reply", "reason", "retry_after"),
    [
        (
            Reply.json(429, {"code": 20429, "status": 429}, {"retry-after": "3"}),
            FailureReason.RATE_LIMITED,
            3,
        ),
        (Reply.json(500, {"code": 20500, "status": 500}), FailureReason.PROVIDER_UNAVAILABLE, None),
        (Reply(503), FailureReason.PROVIDER_UNAVAILABLE, None),
    ],
)
async def test_provider_trouble_is_retryable(
    twilio: tuple[FakeTwilio, str], reply: Reply, reason: FailureReason, retry_after: float | None
) -> None:
    fake, base = twilio
    fake.server.queued.append(reply)
    notifier = notifier_for(base)
    receipt = await notifier.send(make_message(Channel.SMS, PATIENT))
    await notifier.aclose()
    assert receipt.status is DeliveryStatus.RETRYABLE_FAILURE
    assert (receipt.reason, receipt.retry_after_seconds) == (reason, retry_after)


async def test_a_silent_provider_times_out(twilio: tuple[FakeTwilio, str]) -> None:
    fake, base = twilio
    fake.server.hold = True
    notifier = notifier_for(base, timeout=0.3)
    receipt = await notifier.send(make_message(Channel.SMS, PATIENT))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.TIMEOUT, True)


async def test_an_unreachable_provider_is_retryable() -> None:
    notifier = notifier_for(f"http://127.0.0.1:{unused_port()}")
    receipt = await notifier.send(make_message(Channel.SMS, PATIENT))
    await notifier.aclose()
    assert (receipt.reason, receipt.retryable) == (FailureReason.CONNECTION_FAILED, True)


def test_exactly_one_sender_must_be_configured() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SmsConfig(account_sid=ACCOUNT, auth_token=TOKEN)
    with pytest.raises(ValueError, match="exactly one"):
        SmsConfig(
            account_sid=ACCOUNT, auth_token=TOKEN, from_number=FROM, messaging_service_sid="MG1"
        )
    assert TOKEN not in repr(SmsConfig(account_sid=ACCOUNT, auth_token=TOKEN, from_number=FROM))
