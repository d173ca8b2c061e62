"""Resolving `RecipientType.PATIENT_PHONE` (a patient id) to their phone number for SMS.

The number is encrypted under the patient's data key (``patients.phone_ciphertext``) and is
decrypted only here, just before a send; whether the patient opted in to SMS is the gate's
question (`backend.domain.preferences.gate`), asked first. Numbers are stored as typed
("+44 20 7946 0001"); providers want E.164, so separators are removed. An erased patient, a
destroyed key or a number that is not international is a permanent failure.
"""

import re
import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto.errors import CryptoError
from backend.db.models.patient import Patient
from backend.domain.outbox.recipients import RecipientUnavailable
from backend.keyring.service import Keyring
from notifications.base import WebPushSubscription

_SEPARATORS = re.compile(r"[\s\-().]")
_E164 = re.compile(r"\+[1-9]\d{6,14}")


def e164(number: str) -> str | None:
    compact = _SEPARATORS.sub("", number)
    return compact if _E164.fullmatch(compact) else None


class PatientPhoneResolver:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    async def resolve(
        self, session: AsyncSession, recipient_type: str, recipient_id: str
    ) -> str | WebPushSubscription:
        try:
            patient_id = uuid.UUID(recipient_id)
        except ValueError:
            raise RecipientUnavailable(recipient_type) from None
        patient = (await session.exec(select(Patient).where(col(Patient.id) == patient_id))).first()
        if patient is None or patient.erased_at is not None or patient.phone_ciphertext is None:
            raise RecipientUnavailable(recipient_type)
        try:
            keys = await self._keyring.owner_keys(session, patient.id)
            number = keys.decrypt(
                table="patients",
                column="phone_ciphertext",
                row_id=str(patient.id),
                blob=bytes(patient.phone_ciphertext),
            ).decode("utf-8")
        except CryptoError as error:
            raise RecipientUnavailable(recipient_type) from error
        address = e164(number)
        if address is None:
            raise RecipientUnavailable(recipient_type)
        return address
