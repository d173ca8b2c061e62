"""Development default: one JSON line per message, written to a file or a stream.

It stands in for every channel while nothing else is configured, so it records which channel
the message was meant for. The recipient is written as a short fingerprint, not the address:
this file is a log, and contact details are PHI.
"""

import asyncio
import hashlib
import sys
from pathlib import Path
from typing import TextIO

import msgspec

from notifications.base import Channel, Clock, Message, Receipt, accepted, utc_now


class ConsoleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # None writes to standard error.
    path: str | None = None


class ConsoleLine(msgspec.Struct, frozen=True):
    at: str
    message_id: str
    idempotency_key: str
    channel: Channel
    kind: str
    title: str
    body: str
    data: dict[str, str]
    collapse_key: str
    urgency: str
    recipient_fingerprint: str


def recipient_fingerprint(message: Message) -> str:
    """Enough to tell two recipients apart in a development log, not enough to contact them."""
    raw = msgspec.json.encode(message.recipient)
    return hashlib.sha256(raw).hexdigest()[:12]


class ConsoleNotifier:
    channel = Channel.CONSOLE

    def __init__(
        self, config: ConsoleConfig, *, stream: TextIO | None = None, clock: Clock = utc_now
    ) -> None:
        self._path = Path(config.path) if config.path is not None else None
        self._stream = stream
        self._clock = clock
        self._lock = asyncio.Lock()

    def _line(self, message: Message) -> str:
        line = ConsoleLine(
            at=self._clock().isoformat(),
            message_id=message.id,
            idempotency_key=message.idempotency_key,
            channel=message.channel,
            kind=message.kind.value,
            title=message.title,
            body=message.body,
            data=message.data.as_strings(),
            collapse_key=message.effective_collapse_key,
            urgency=message.urgency.value,
            recipient_fingerprint=recipient_fingerprint(message),
        )
        return msgspec.json.encode(line).decode() + "\n"

    def _write(self, text: str) -> None:
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as file:
                file.write(text)
        else:
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write(text)
            stream.flush()

    async def send(self, message: Message) -> Receipt:
        text = self._line(message)
        # One writer at a time so concurrent sends never interleave half lines.
        async with self._lock:
            await asyncio.to_thread(self._write, text)
        return accepted(message, self.channel, provider_message_id=None, delivered=True)

    async def aclose(self) -> None:
        return None
