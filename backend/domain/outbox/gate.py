"""What the dispatcher asks before a send: go ahead (perhaps by another channel), wait, or drop.

Preferences live outside the outbox (`backend.domain.preferences`): a patient's chosen channels
and quiet hours, a clinician's channel and on-call state. They are read at send time, not when
the message is written, so a change applies to everything still queued.
"""

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from notifications.base import Channel, Urgency


class Send(msgspec.Struct, frozen=True, kw_only=True):
    """Send now; a field set here replaces the stored one (a direct ``recipient`` skips the
    resolver: a named webhook endpoint is its own address)."""

    channel: Channel | None = None
    recipient: str | None = None
    urgency: Urgency | None = None


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    """Not now (quiet hours, off call): try again at ``until``; not counted as an attempt."""

    until: datetime
    reason: str


class Drop(msgspec.Struct, frozen=True, kw_only=True):
    """Never by this route (the recipient turned the channel off): cancelled, with a reason."""

    reason: str


Route = Send | Hold | Drop
SEND: Send = Send()


class MessageGate(Protocol):
    async def routes(
        self, connection: AsyncConnection, rows: Sequence[Row[Any]], now: datetime
    ) -> Mapping[uuid.UUID, Route]:
        """A route per claimed row id; a row left out is sent as stored."""
        ...
