"""Field decryption for an export: the same format and checks as `backend.crypto` and
`backend.keyring`, with the per-field work an export repeats a million times done once.

An export opens two fields of every response, all of a patient's under one or two data keys. The
general path (`OwnerKeys.decrypt`) builds the associated data and an AES-GCM context for every
field; here each data key gets one `AESGCM` for the whole group, the table/column and patient parts
of the associated data are encoded once, and the key rows of a whole group of patients are read in
one query. Nothing is relaxed: the header is checked the same way, the associated data is the same
bytes (`backend.crypto.format.build_field_aad`), and the key used is exactly the version the
header names. Any failure is handed to the general path, which raises the specific error and logs
the decryption-failed alert, so an export fails exactly as any other reader would.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.crypto import unwrap_dek
from backend.crypto.errors import CryptoError
from backend.crypto.format import (
    FORMAT_VERSION,
    HEADER_BYTES,
    OVERHEAD_BYTES,
    SUITE_AES_256_GCM,
    length_prefixed,
)
from backend.keyring.service import DATA_KEYS, Keyring, OwnerKeys

_k = DATA_KEYS.c
_ROW_ID_PREFIX: Final = (36).to_bytes(4, "big")
"""Every row id an export opens is a canonical UUID string, 36 characters."""

Wrapped = dict[int, tuple[str, bytes]]
_FORMAT: Final = bytes((FORMAT_VERSION, SUITE_AES_256_GCM))


def field_prefix(table: str, column: str) -> bytes:
    """The table and column part of the associated data, encoded once per column."""
    return length_prefixed(table.encode("utf-8"), column.encode("utf-8"))


def uuid_text(value: object) -> str:
    """A UUID column value, as the driver returns it, as the canonical string the ciphertexts
    are bound to. SQLite hands back 32 hex digits (slicing them is cheaper than `uuid.UUID`);
    PostgreSQL a UUID."""
    if isinstance(value, str):
        if len(value) == 32:
            return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
        return str(uuid.UUID(value))
    return str(value)


def uuid_bytes(value: object) -> bytes:
    """A UUID column value as its 16 bytes (what pseudonyms are computed from)."""
    if isinstance(value, str):
        return bytes.fromhex(value) if len(value) == 32 else uuid.UUID(value).bytes
    if isinstance(value, uuid.UUID):
        return value.bytes
    raise TypeError("not a UUID column value")


def as_uuid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def utc_instant(value: object) -> dt.datetime:
    """A timestamp column value as an aware UTC datetime (`backend.db.types.UTCDateTime`'s
    result, without its per-value processing). SQLite hands back text without an offset."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)
    raise TypeError("not a timestamp column value")


class FieldOpener:
    """Decrypts one owner's fields; one `AESGCM` per data key version, made on first use."""

    __slots__ = ("_aeads", "_generation", "_keyring", "_owner", "_owner_id", "_suffix", "_wrapped")

    def __init__(
        self, keyring: Keyring, owner_id: uuid.UUID, wrapped: Wrapped, generation: int
    ) -> None:
        self._keyring = keyring
        self._owner_id = owner_id
        self._owner = str(owner_id)
        owner = self._owner.encode("utf-8")
        self._suffix = len(owner).to_bytes(4, "big") + owner
        self._wrapped = wrapped
        self._generation = generation
        self._aeads: dict[bytes, AESGCM] = {}

    def _aead(self, version: int) -> AESGCM | None:
        entry = self._wrapped.get(version)
        if entry is None:
            return None
        kek_id, wrapped = entry
        cache = self._keyring.cache
        dek = cache.get(self._owner, version)
        if dek is None:
            if kek_id not in self._keyring.kek.kids():
                return None  # the general path reloads the key file (online KEK rotation)
            dek = unwrap_dek(
                self._keyring.kek,
                patient_id=self._owner,
                dek_version=version,
                kek_id=kek_id,
                wrapped_dek=wrapped,
            )
            cache.put(self._owner, version, dek, generation=self._generation)
        return AESGCM(dek)

    def open(self, prefix: bytes, table: str, column: str, row_id: str, blob: bytes) -> bytes:
        """The plaintext of `table.column` of row `row_id` (`prefix` = `field_prefix(table,
        column)`). Raises what `OwnerKeys.decrypt` raises for a field it cannot open."""
        # Format 0x01, suite AES-256-GCM (header bytes 0-1); the key by the 4-byte version.
        if blob[:2] == _FORMAT and len(blob) >= OVERHEAD_BYTES and len(row_id) == 36:
            version = blob[2:6]
            aead = self._aeads.get(version)
            if aead is None:
                try:
                    aead = self._aead(int.from_bytes(version, "big"))
                except CryptoError:
                    aead = None  # a key that does not unwrap: the general path says why
                if aead is not None:
                    self._aeads[version] = aead
            if aead is not None:
                aad = blob[:HEADER_BYTES] + prefix + _ROW_ID_PREFIX + row_id.encode() + self._suffix
                try:
                    return aead.decrypt(blob[6:HEADER_BYTES], blob[HEADER_BYTES:], aad)
                except InvalidTag:
                    pass
        return self._general(table, column, row_id, blob)

    def _general(self, table: str, column: str, row_id: str, blob: bytes) -> bytes:
        keys = OwnerKeys(
            self._keyring,
            self._owner_id,
            self._wrapped,
            active_version=None,
            generation=self._generation,
        )
        return keys.decrypt(table=table, column=column, row_id=row_id, blob=bytes(blob))


async def group_openers(
    connection: AsyncConnection, keyring: Keyring, owner_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, FieldOpener]:
    """Every live key row of a group of owners in one query (as `Keyring.owner_keys` reads
    them for one owner), as one opener per owner."""
    # The cache generation before the rows, as `Keyring.owner_keys` does: a shred that lands in
    # between keeps its key out of the cache.
    generation = keyring.cache.generation
    wrapped: dict[uuid.UUID, Wrapped] = {owner: {} for owner in owner_ids}
    if owner_ids:
        rows = await connection.execute(
            select(_k.owner_id, _k.dek_version, _k.kek_id, _k.wrapped_dek).where(
                _k.owner_id.in_(list(owner_ids)),
                _k.wrapped_dek.is_not(None),
                _k.destroyed_at.is_(None),
            )
        )
        for row in rows.all():
            wrapped[row.owner_id][int(row.dek_version)] = (str(row.kek_id), bytes(row.wrapped_dek))
    return {owner: FieldOpener(keyring, owner, keys, generation) for owner, keys in wrapped.items()}
