"""Resolving `RecipientType.DEVICE` (a patient's device id) to its push address at send time.

The push token is encrypted under the patient's data key by identity
(`backend/identity/patients.py`, table ``devices``, column ``push_token_ciphertext``); it is
decrypted only here, just before a send. A revoked device, an erased patient (shredded key) or a
missing token is a permanent failure: the outbox records it and does not retry.

A claimed batch is resolved at once: one query for its devices and one for their owners' key
rows (Core, no ORM objects), then a decryption per token.
"""

import uuid
from collections.abc import Sequence
from typing import Final

import msgspec
from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto.errors import CryptoError
from backend.db.models.device import Device
from backend.domain.outbox.recipients import Address, RecipientUnavailable
from backend.keyring.service import Keyring
from notifications.base import WebPushSubscription

DEVICES: Final[Table] = Device.__table__  # type: ignore[attr-defined]

# Built once: every claimed batch of pushes runs it.
_USABLE_DEVICES: Final = select(
    DEVICES.c.id, DEVICES.c.patient_id, DEVICES.c.platform, DEVICES.c.push_token_ciphertext
).where(
    DEVICES.c.id.in_(bindparam("device_ids", expanding=True)),
    DEVICES.c.revoked_at.is_(None),
    DEVICES.c.push_token_ciphertext.is_not(None),
)


class DeviceResolver:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    async def resolve(
        self, session: AsyncSession, recipient_type: str, recipient_id: str
    ) -> str | WebPushSubscription:
        found = await self.resolve_many(await session.connection(), recipient_type, [recipient_id])
        if recipient_id not in found:
            raise RecipientUnavailable(recipient_type)
        return found[recipient_id]

    async def resolve_many(
        self, connection: AsyncConnection, recipient_type: str, recipient_ids: Sequence[str]
    ) -> dict[str, Address]:
        wanted: dict[str, uuid.UUID] = {}
        for recipient_id in recipient_ids:
            try:
                wanted[recipient_id] = uuid.UUID(recipient_id)
            except ValueError:
                continue
        if not wanted:
            return {}
        rows = await connection.execute(
            _USABLE_DEVICES, {"device_ids": sorted(set(wanted.values()))}
        )
        devices = {row.id: row for row in rows.all()}
        keys = await self._keyring.owners_keys(
            connection, (row.patient_id for row in devices.values())
        )
        found: dict[str, Address] = {}
        for recipient_id, device_id in wanted.items():
            device = devices.get(device_id)
            if device is None:
                continue
            try:
                token = (
                    keys[device.patient_id]
                    .decrypt(
                        table="devices",
                        column="push_token_ciphertext",
                        row_id=str(device.id),
                        blob=bytes(device.push_token_ciphertext),
                    )
                    .decode("utf-8")
                )
            except CryptoError:  # shredded or missing key: nobody can be reached
                continue
            if device.platform == "web":
                # A browser registers its PushSubscription (endpoint and keys) as JSON.
                try:
                    found[recipient_id] = msgspec.json.decode(token, type=WebPushSubscription)
                except msgspec.DecodeError:
                    continue
            else:
                found[recipient_id] = token
        return found
