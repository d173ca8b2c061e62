"""One notifier per channel, built from configuration; `send` routes a message by its channel.

With nothing configured every channel goes to the console channel, the development default, so a
fresh checkout "delivers" everything to a JSON-lines log. Once any real channel is configured,
`console_fallback` decides whether the others still go to the console (development) or come back
as a retryable `misconfigured` receipt (production: the outbox keeps them until an operator adds
the channel, and nothing pretends to have been sent).
"""

from collections.abc import Mapping
from types import TracebackType
from typing import Self

import msgspec

from notifications.base import (
    Channel,
    Clock,
    DeliveryError,
    FailureReason,
    Message,
    Notifier,
    Receipt,
    utc_now,
)
from notifications.console import ConsoleConfig, ConsoleNotifier
from notifications.email import EmailConfig, EmailNotifier
from notifications.push.apns import ApnsConfig, ApnsNotifier
from notifications.push.fcm import FcmConfig, FcmNotifier
from notifications.push.webpush import WebPushConfig, WebPushNotifier
from notifications.sms import SmsConfig, SmsNotifier
from notifications.webhook import WebhookConfig, WebhookNotifier


class NotificationsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    console: ConsoleConfig = msgspec.field(default_factory=ConsoleConfig)
    console_fallback: bool = True
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None
    sms: SmsConfig | None = None
    web_push: WebPushConfig | None = None
    fcm: FcmConfig | None = None
    apns: ApnsConfig | None = None


def build_notifiers(
    config: NotificationsConfig, *, clock: Clock = utc_now
) -> dict[Channel, Notifier]:
    notifiers: dict[Channel, Notifier] = {
        Channel.CONSOLE: ConsoleNotifier(config.console, clock=clock)
    }
    if config.webhook is not None:
        notifiers[Channel.WEBHOOK] = WebhookNotifier(config.webhook, clock=clock)
    if config.email is not None:
        notifiers[Channel.EMAIL] = EmailNotifier(config.email, clock=clock)
    if config.sms is not None:
        notifiers[Channel.SMS] = SmsNotifier(config.sms, clock=clock)
    if config.web_push is not None:
        notifiers[Channel.WEB_PUSH] = WebPushNotifier(config.web_push, clock=clock)
    if config.fcm is not None:
        notifiers[Channel.FCM] = FcmNotifier(config.fcm, clock=clock)
    if config.apns is not None:
        notifiers[Channel.APNS] = ApnsNotifier(config.apns, clock=clock)
    return notifiers


class NotifierRegistry:
    """Routes each message to its channel's notifier; closes them all on exit."""

    def __init__(self, notifiers: Mapping[Channel, Notifier], *, console_fallback: bool) -> None:
        self._notifiers = dict(notifiers)
        self._console_fallback = console_fallback

    @classmethod
    def from_config(cls, config: NotificationsConfig, *, clock: Clock = utc_now) -> Self:
        return cls(build_notifiers(config, clock=clock), console_fallback=config.console_fallback)

    @property
    def channels(self) -> frozenset[Channel]:
        return frozenset(self._notifiers)

    def notifier_for(self, channel: Channel) -> Notifier | None:
        notifier = self._notifiers.get(channel)
        if notifier is None and self._console_fallback:
            return self._notifiers.get(Channel.CONSOLE)
        return notifier

    async def send(self, message: Message) -> Receipt:
        notifier = self.notifier_for(message.channel)
        if notifier is None:
            return DeliveryError(FailureReason.MISCONFIGURED).receipt(message, message.channel)
        return await notifier.send(message)

    async def aclose(self) -> None:
        for notifier in self._notifiers.values():
            await notifier.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
