"""Identifying fields: encrypted under the owner's data key, found by blind index (DESIGN §5).

The plaintext exists only in memory: it is encrypted before the row is added to the session, so
no INSERT, log line or flush ever carries it.
"""

from typing import Final
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto import (
    BlindIndexPurpose,
    normalise_email,
    normalise_identifier,
    normalise_phone,
)
from backend.keyring.service import OwnerKeys
from backend.state import Runtime

STAFF_EMAIL: Final = BlindIndexPurpose(
    table="staff", column="email_index", normalise=normalise_email
)
PATIENT_EMAIL: Final = BlindIndexPurpose(
    table="patients", column="email_index", normalise=normalise_email
)
PATIENT_MRN: Final = BlindIndexPurpose(
    table="patients", column="mrn_index", normalise=normalise_identifier
)
PATIENT_PHONE: Final = BlindIndexPurpose(
    table="patients", column="phone_index", normalise=normalise_phone
)


def blind_index(runtime: Runtime, purpose: BlindIndexPurpose, value: str) -> bytes | None:
    """The index of ``value``, or None when it normalises to nothing (e.g. a phone without
    digits), which can match nothing."""
    try:
        return runtime.blind_indexes.compute(purpose, value)
    except ValueError:
        return None


class FieldSealer:
    """Encrypts and decrypts one owner's fields of one row, with one key lookup."""

    def __init__(self, keys: OwnerKeys, table: str, row_id: UUID) -> None:
        self._keys = keys
        self._table = table
        self._row_id = str(row_id)

    @classmethod
    async def open(
        cls,
        runtime: Runtime,
        session: AsyncSession,
        owner_id: UUID,
        table: str,
        row_id: UUID,
        *,
        for_writing: bool,
    ) -> "FieldSealer":
        keys = await runtime.keyring.owner_keys(session, owner_id, active_only=for_writing)
        return cls(keys, table, row_id)

    def seal(self, column: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        return self._keys.encrypt(
            table=self._table, column=column, row_id=self._row_id, plaintext=value.encode("utf-8")
        )

    def unseal(self, column: str, blob: bytes | None) -> str | None:
        if blob is None:
            return None
        plaintext = self._keys.decrypt(
            table=self._table, column=column, row_id=self._row_id, blob=bytes(blob)
        )
        return plaintext.decode("utf-8")
