import asyncio
import contextlib
import email
import email.policy
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from notifications.base import Channel, DeliveryStatus, FailureReason
from notifications.email import EmailConfig, EmailNotifier, classify_smtp_error, message_id_for
from notifications.templates import MessageKind
from tests.notifications.conftest import assert_no_phi, make_message
from tests.notifications.servers import TlsFiles, unused_port

CLINICIAN = "dr.lee@clinic.example"
DASHBOARD = "https://interlude.clinic.example/dashboard"


@dataclass
class Mailbox:
    """An aiosmtpd handler: records what arrives and whether it arrived over TLS."""

    received: list[tuple[Envelope, bool]] = field(default_factory=list)
    refuse_rcpt: str | None = None  # e.g. "550 5.1.1 no such user"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append((envelope, session.ssl is not None))
        return "250 2.0.0 queued"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"interlude",
        b"relay-password",
    )
    return AuthResult(success=ok, handled=False)


@contextlib.asynccontextmanager
async def smtp_server(mailbox: Mailbox, tls: TlsFiles | None) -> AsyncIterator[int]:
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            mailbox,
            hostname="mail.clinic.example",
            tls_context=context,
            require_starttls=context is not None,
            authenticator=_authenticator,
            auth_require_tls=True,
        ),
        "127.0.0.1",
        0,
    )
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def config(port: int, tls: TlsFiles, **overrides: Any) -> EmailConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "Interlude <alerts@clinic.example>",
        "dashboard_url": DASHBOARD,
        "username": "interlude",
        "password": "relay-password",
        "ca_file": tls.ca_file,
        "timeout_seconds": 3.0,
    }
    values.update(overrides)
    return EmailConfig(**values)


async def test_the_clinician_receives_a_minimal_email_over_starttls(tls_files: TlsFiles) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, tls_files) as port:
        notifier = EmailNotifier(config(port, tls_files))
        message = make_message(Channel.EMAIL, CLINICIAN, kind=MessageKind.ALERT)
        receipt = await notifier.send(message)
        await notifier.aclose()

    assert receipt.status is DeliveryStatus.ACCEPTED
    assert receipt.provider_message_id == message_id_for(message.idempotency_key, "clinic.example")
    [(envelope, over_tls)] = mailbox.received
    assert over_tls
    assert envelope.mail_from == "alerts@clinic.example"
    assert envelope.rcpt_tos == [CLINICIAN]
    assert isinstance(envelope.content, bytes)
    parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert parsed["Subject"] == "New alert for a patient in your clinic"
    assert parsed["Message-ID"] == receipt.provider_message_id
    assert parsed["Auto-Submitted"] == "auto-generated"
    body = parsed.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert DASHBOARD in text
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    footer = paragraphs[-1]
    assert_no_phi([parsed["Subject"], *paragraphs], message, also_allowed=(DASHBOARD, footer))
    assert "patient details" in footer


async def test_a_resend_carries_the_same_message_id(tls_files: TlsFiles) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, tls_files) as port:
        notifier = EmailNotifier(config(port, tls_files))
        message = make_message(Channel.EMAIL, CLINICIAN, kind=MessageKind.ALERT_ESCALATION)
        await notifier.send(message)
        await notifier.send(message)
    ids = {
        email.message_from_bytes(envelope.content)["Message-ID"]  # type: ignore[arg-type]
        for envelope, _ in mailbox.received
    }
    assert len(mailbox.received) == 2
    assert len(ids) == 1


async def test_a_relay_without_starttls_gets_nothing(tls_files: TlsFiles) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, tls=None) as port:
        notifier = EmailNotifier(config(port, tls_files, username=None, password=None))
        receipt = await notifier.send(make_message(Channel.EMAIL, CLINICIAN))
    assert receipt.status is DeliveryStatus.RETRYABLE_FAILURE
    assert receipt.reason is FailureReason.TLS_FAILED
    assert mailbox.received == []


async def test_an_untrusted_certificate_is_refused(tls_files: TlsFiles) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, tls_files) as port:
        # No private CA: the system trust store does not know the test CA.
        notifier = EmailNotifier(config(port, tls_files, ca_file=None))
        receipt = await notifier.send(make_message(Channel.EMAIL, CLINICIAN))
    assert receipt.reason is FailureReason.TLS_FAILED
    assert receipt.retryable
    assert mailbox.received == []


async def test_wrong_relay_credentials_are_an_auth_failure(tls_files: TlsFiles) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, tls_files) as port:
        notifier = EmailNotifier(config(port, tls_files, password="wrong"))
        receipt = await notifier.send(make_message(Channel.EMAIL, CLINICIAN))
    assert (receipt.reason, receipt.retryable) == (FailureReason.AUTH_FAILED, True)
    assert mailbox.received == []


@pytest.mark.parametrize(
    ("reply", "status", "reason"),
    [
        (
            "550 5.1.1 mailbox unavailable",
            DeliveryStatus.PERMANENT_FAILURE,
            FailureReason.RECIPIENT_INVALID,
        ),
        (
            "451 4.3.0 try again later",
            DeliveryStatus.RETRYABLE_FAILURE,
            FailureReason.PROVIDER_UNAVAILABLE,
        ),
    ],
)
async def test_refused_recipients_are_classified_by_reply_code(
    tls_files: TlsFiles, reply: str, status: DeliveryStatus, reason: FailureReason
) -> None:
    mailbox = Mailbox(refuse_rcpt=reply)
    async with smtp_server(mailbox, tls_files) as port:
        receipt = await EmailNotifier(config(port, tls_files)).send(
            make_message(Channel.EMAIL, CLINICIAN)
        )
    assert (receipt.status, receipt.reason) == (status, reason)


async def test_connection_refused_is_retryable(tls_files: TlsFiles) -> None:
    receipt = await EmailNotifier(config(unused_port(), tls_files)).send(
        make_message(Channel.EMAIL, CLINICIAN)
    )
    assert (receipt.reason, receipt.retryable) == (FailureReason.CONNECTION_FAILED, True)


async def test_a_relay_that_never_greets_times_out(tls_files: TlsFiles) -> None:
    connected = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        notifier = EmailNotifier(config(port, tls_files, timeout_seconds=0.3))
        receipt = await asyncio.wait_for(notifier.send(make_message(Channel.EMAIL, CLINICIAN)), 5)
    finally:
        server.close()
        await server.wait_closed()
    assert connected.is_set()
    assert (receipt.reason, receipt.retryable) == (FailureReason.TIMEOUT, True)


def test_an_oversized_message_reply_is_permanent() -> None:
    error = classify_smtp_error(aiosmtplib.SMTPDataError(552, "too big"))
    assert (error.reason, error.retryable) == (FailureReason.PAYLOAD_TOO_LARGE, False)


def test_a_refused_sender_is_our_configuration() -> None:
    error = classify_smtp_error(aiosmtplib.SMTPSenderRefused(553, "no", "alerts@x"))
    assert (error.reason, error.retryable) == (FailureReason.MISCONFIGURED, True)


def test_the_config_repr_withholds_the_password(tls_files: TlsFiles) -> None:
    assert "relay-password" not in repr(config(25, tls_files))
