"""Turning an outbox row's recipient reference into an address, at send time only."""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from notifications.base import WebPushSubscription

Address = str | WebPushSubscription


class RecipientUnavailable(Exception):
    """The recipient no longer exists or has no usable address (a permanent failure)."""


class RecipientResolver(Protocol):
    async def resolve(
        self, session: AsyncSession, recipient_type: str, recipient_id: str
    ) -> str | WebPushSubscription:
        """The address to send to; raises RecipientUnavailable when there is none."""
        ...


@runtime_checkable
class BatchRecipientResolver(Protocol):
    """A resolver that answers for a whole claimed batch at once (a fan-out's recipients)."""

    async def resolve_many(
        self, connection: AsyncConnection, recipient_type: str, recipient_ids: Sequence[str]
    ) -> Mapping[str, Address]:
        """The address of every recipient that has one; an id left out is unavailable."""
        ...


async def resolve_all(
    resolver: RecipientResolver, connection: AsyncConnection, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Address]:
    """Addresses for (recipient type, recipient id) pairs, one `resolve_many` per type where
    the resolver has it: a query (and a key read) per message made resolving a fan-out's
    largest cost after the HTTP client. A pair left out has no address."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for recipient_type, recipient_id in dict.fromkeys(wanted):
        by_type[recipient_type].append(recipient_id)
    found: dict[tuple[str, str], Address] = {}
    for recipient_type, ids in by_type.items():
        if isinstance(resolver, BatchRecipientResolver):
            addresses = await resolver.resolve_many(connection, recipient_type, ids)
        else:
            addresses = await _one_by_one(resolver, connection, recipient_type, ids)
        found.update(((recipient_type, i), address) for i, address in addresses.items())
    return found


async def _one_by_one(
    resolver: RecipientResolver,
    connection: AsyncConnection,
    recipient_type: str,
    recipient_ids: Sequence[str],
) -> dict[str, Address]:
    found: dict[str, Address] = {}
    async with AsyncSession(bind=connection) as session:
        for recipient_id in recipient_ids:
            try:
                found[recipient_id] = await resolver.resolve(session, recipient_type, recipient_id)
            except RecipientUnavailable:
                continue
    return found


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

    async def resolve_many(
        self, connection: AsyncConnection, recipient_type: str, recipient_ids: Sequence[str]
    ) -> Mapping[str, Address]:
        resolver = self._by_type.get(recipient_type)
        if resolver is None:
            return {}
        if isinstance(resolver, BatchRecipientResolver):
            return await resolver.resolve_many(connection, recipient_type, recipient_ids)
        return await _one_by_one(resolver, connection, recipient_type, recipient_ids)
