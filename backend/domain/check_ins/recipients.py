"""Resolving `RecipientType.DEVICE` (a patient's device id) to its push address at send time.

The push token is encrypted under the patient's data key by identity
(`backend/identity/patients.py`, table ``devices``, column ``push_token_ciphertext``); it is
decrypted only here, just before a send. A revoked device, an erased patient (shredded key) or a
missing token is a permanent failure: the outbox records it and does not retry.
"""

import uuid

import msgspec
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto.errors import CryptoError
from backend.db.models.device import Device
from backend.domain.outbox.recipients import RecipientUnavailable
from backend.keyring.service import Keyring
from notifications.base import WebPushSubscription


class DeviceResolver:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    async def resolve(
        self, session: AsyncSession, recipient_type: str, recipient_id: str
    ) -> str | WebPushSubscription:
        try:
            device_id = uuid.UUID(recipient_id)
        except ValueError:
            raise RecipientUnavailable(recipient_type) from None
        device = (await session.exec(select(Device).where(col(Device.id) == device_id))).first()
        if device is None or device.revoked_at is not None or device.push_token_ciphertext is None:
            raise RecipientUnavailable(recipient_type)
        try:
            keys = await self._keyring.owner_keys(session, device.patient_id)
            token = keys.decrypt(
                table="devices",
                column="push_token_ciphertext",
                row_id=str(device.id),
                blob=bytes(device.push_token_ciphertext),
            ).decode("utf-8")
        except CryptoError as error:  # shredded or missing key: nobody can be reached
            raise RecipientUnavailable(recipient_type) from error
        if device.platform == "web":
            # A browser registers its PushSubscription (endpoint and keys) as JSON.
            try:
                return msgspec.json.decode(token, type=WebPushSubscription)
            except msgspec.DecodeError:
                raise RecipientUnavailable(recipient_type) from None
        return token
