"""E-mail over SMTP for clinicians: STARTTLS always, minimal content, a link to the dashboard.

The text is the template and a link, nothing else: mail is stored in inboxes and relays we do not
control, so it must be useless to anyone but the clinician who signs in. The Message-ID is derived
from the idempotency key, so a resend after a crash carries the same Message-ID and mail systems
and clients can recognise the duplicate (RFC 5322 §3.6.4). `Auto-Submitted: auto-generated`
(RFC 3834) keeps vacation responders from answering a robot.
"""

import hashlib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib
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
from notifications.http import tls_context

FOOTER = "This automatic message contains no patient details. Sign in to the dashboard to see them."


class EmailConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str
    sender: str  # the From address, e.g. "Interlude <alerts@clinic.example>"
    dashboard_url: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    # Port 465 style (TLS from the first byte) instead of STARTTLS on 587; plaintext is not an
    # option.
    implicit_tls: bool = False
    ca_file: str | None = None
    timeout_seconds: float = 15.0
    # Right-hand side of generated Message-IDs; defaults to the sender's domain.
    message_id_domain: str | None = None

    def __repr__(self) -> str:
        return f"EmailConfig(host={self.host!r}, port={self.port}, password=<redacted>)"


def message_id_for(idempotency_key: str, domain: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def _sender_domain(sender: str) -> str:
    address = sender.rsplit("<", 1)[-1].rstrip(">")
    return address.rsplit("@", 1)[-1] if "@" in address else "interlude.invalid"


def compose_email(message: Message, config: EmailConfig, clock: Clock = utc_now) -> EmailMessage:
    if not isinstance(message.recipient, str):
        raise DeliveryError(FailureReason.RECIPIENT_INVALID)
    email = EmailMessage()
    email["From"] = config.sender
    email["To"] = message.recipient
    email["Subject"] = message.title
    email["Date"] = format_datetime(clock())
    email["Message-ID"] = message_id_for(
        message.idempotency_key, config.message_id_domain or _sender_domain(config.sender)
    )
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(f"{message.body}\n\n{config.dashboard_url}\n\n{FOOTER}\n")
    return email


def _by_code(code: int, permanent: FailureReason) -> DeliveryError:
    # RFC 5321 §4.2.1: 4yz is a transient failure, 5yz a permanent one.
    if 400 <= code < 500:
        return DeliveryError(FailureReason.PROVIDER_UNAVAILABLE)
    return DeliveryError(permanent)


def classify_smtp_error(error: Exception) -> DeliveryError:
    """Map an aiosmtplib or socket failure to a delivery error (pure; no message text kept)."""
    if isinstance(error, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return DeliveryError(FailureReason.TIMEOUT)
    if isinstance(error, ssl.SSLError):
        return DeliveryError(FailureReason.TLS_FAILED)
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return DeliveryError(FailureReason.AUTH_FAILED)
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        if codes and all(code >= 500 for code in codes):
            return DeliveryError(FailureReason.RECIPIENT_INVALID)
        return DeliveryError(FailureReason.PROVIDER_UNAVAILABLE)
    if isinstance(error, aiosmtplib.SMTPRecipientRefused):
        return _by_code(error.code, FailureReason.RECIPIENT_INVALID)
    if isinstance(error, aiosmtplib.SMTPSenderRefused):
        return _by_code(error.code, FailureReason.MISCONFIGURED)
    if isinstance(error, aiosmtplib.SMTPConnectResponseError):
        return DeliveryError(FailureReason.PROVIDER_UNAVAILABLE)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        # 552: message exceeds the storage allocation (RFC 5321 §4.2.3).
        if error.code == 552:
            return DeliveryError(FailureReason.PAYLOAD_TOO_LARGE)
        return _by_code(error.code, FailureReason.REJECTED)
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        # The relay did not offer STARTTLS (or AUTH): we never fall back to plaintext.
        return DeliveryError(FailureReason.TLS_FAILED)
    if isinstance(error, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        if isinstance(error.__cause__, ssl.SSLError) or isinstance(error.__context__, ssl.SSLError):
            return DeliveryError(FailureReason.TLS_FAILED)
        return DeliveryError(FailureReason.CONNECTION_FAILED)
    if isinstance(error, OSError):
        return DeliveryError(FailureReason.CONNECTION_FAILED)
    return DeliveryError(FailureReason.PROTOCOL_ERROR)


class EmailNotifier:
    channel = Channel.EMAIL

    def __init__(self, config: EmailConfig, *, clock: Clock = utc_now) -> None:
        self._config = config
        self._clock = clock
        self._tls = tls_context(config.ca_file)

    async def send(self, message: Message) -> Receipt:
        try:
            email = compose_email(message, self._config, self._clock)
            await self._submit(email)
        except DeliveryError as error:
            return error.receipt(message, self.channel)
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as error:
            return classify_smtp_error(error).receipt(message, self.channel)
        return accepted(message, self.channel, provider_message_id=email["Message-ID"])

    async def _submit(self, email: EmailMessage) -> None:
        config = self._config
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            use_tls=config.implicit_tls,
            # STARTTLS is done below, explicitly, so that a relay that does not offer it gets
            # nothing rather than a plaintext session.
            start_tls=False,
            tls_context=self._tls,
            timeout=config.timeout_seconds,
        )
        async with client:
            if not config.implicit_tls:
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    raise DeliveryError(FailureReason.TLS_FAILED)
                await client.starttls()
            if config.username is not None and config.password is not None:
                await client.login(config.username, config.password)
            await client.send_message(email)

    async def aclose(self) -> None:
        return None
