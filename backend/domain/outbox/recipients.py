"""Turning an outbox row's recipient reference into an address, at send time only."""

from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from notifications.base import WebPushSubscription


class RecipientUnavailable(Exception):
    """The recipient no longer exists or has no usable address (a permanent failure)."""


class RecipientResolver(Protocol):
    async def resolve(
        self, session: AsyncSession, recipient_type: str, recipient_id: str
    ) -> str | WebPushSubscription:
        """The address to send to; raises RecipientUnavailable when there is none."""
        ...


class DirectResolver:
    """Recipients whose reference *is* the address: webhook endpoint names, console."""

    def __init__(self, types: frozenset[str]) -> None:
        self._types = types

    async def resolve(
        self, session: AsyncSession, recipient_type: str, recipient_id: str
    ) -> str | WebPushSubscription:
        if recipient_type not in self._types:
            raise RecipientUnavailable(recipient_type)
        return recipient_id


class ChainResolver:
    """Asks each resolver registered for a recipient type."""

    def __init__(self, by_type: dict[str, RecipientResolver]) -> None:
        self._by_type = by_type

    def register(self, recipient_type: str, resolver: RecipientResolver) -> None:
        self._by_type[recipient_type] = resolver

    async def resolve(
        self, session: AsyncSession, recipient_type: str, recipient_id: str
    ) -> str | WebPushSubscription:
        resolver = self._by_type.get(recipient_type)
        if resolver is None:
            raise RecipientUnavailable(recipient_type)
        return await resolver.resolve(session, recipient_type, recipient_id)
