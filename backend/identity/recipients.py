"""Resolving `RecipientType.STAFF` (a staff member's id) to their e-mail address at send time.

Alerts and escalations are queued for a staff id; the address is encrypted under the staff
member's own data key (``staff.email_ciphertext``) and decrypted only here, just before a send. A
disabled or erased account, or a destroyed key, is a permanent failure: nobody is left to reach,
and the escalation ladder moves on to the next responder.
"""

import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto.errors import CryptoError
from backend.db.models.staff import StaffMember
from backend.domain.outbox.recipients import RecipientUnavailable
from backend.keyring.service import Keyring
from notifications.base import WebPushSubscription


class StaffEmailResolver:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    async def resolve(
        self, session: AsyncSession, recipient_type: str, recipient_id: str
    ) -> str | WebPushSubscription:
        try:
            staff_id = uuid.UUID(recipient_id)
        except ValueError:
            raise RecipientUnavailable(recipient_type) from None
        staff = (
            await session.exec(select(StaffMember).where(col(StaffMember.id) == staff_id))
        ).first()
        if staff is None or staff.status != "active" or staff.email_ciphertext is None:
            raise RecipientUnavailable(recipient_type)
        try:
            keys = await self._keyring.owner_keys(session, staff.id)
            return keys.decrypt(
                table="staff",
                column="email_ciphertext",
                row_id=str(staff.id),
                blob=bytes(staff.email_ciphertext),
            ).decode("utf-8")
        except CryptoError as error:
            raise RecipientUnavailable(recipient_type) from error
