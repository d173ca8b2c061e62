"""Per-owner data keys in the database: create, encrypt, decrypt, shred (crypto-shredding).

The owner is whoever the encrypted fields belong to: a patient or a staff member. Each owner has
one or more DEK versions in ``data_keys``, wrapped by the KEK (``backend.crypto.wrap_dek``); the
newest live version encrypts new writes and every version that still exists can decrypt. The field
format and the rules (never try another key, a destroyed key is a loud error) are
engineering-notes §D.7; this module adds only the storage around ``backend.crypto``.

Every decrypt reads the key row, even when the unwrapped key is cached: the cache saves the KEK
operation (a network round trip with a KMS), not the check that the key still exists, so a key
shredded by another app instance stops decrypting at that instance's next read rather than when its
cache entry expires.

All statements run on the caller's session connection (same transaction); nothing here commits.

DEK rotation (``interlude keys rotate-deks``: a new version per owner, re-encrypting the rows that
use older versions, then destroying them) belongs to the responses work: ``create_key`` already
adds the next version and retires the previous one, and ``destroy_version`` is the last step. The
re-encryption loop needs to know every encrypted column, which only the domain areas know.
"""

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeVar, cast

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto import (
    DecryptionError,
    DekCache,
    KekProvider,
    UnknownKeyError,
    generate_dek,
    open_columns,
    open_field,
    open_fields,
    parse_field,
    seal_field,
    unwrap_dek,
    wrap_dek,
)
from backend.crypto.errors import CryptoError
from backend.db.models.data_key import DataKey
from backend.lib.clock import Clock, SystemClock

__all__ = ["DATA_KEYS", "Keyring", "OwnerErasedError", "OwnerKeys"]

logger = logging.getLogger("interlude.keyring")

DATA_KEYS: Final = cast(Table, DataKey.__table__)  # type: ignore[attr-defined]
_c = DATA_KEYS.c

# A wrapped key naming a KEK this process does not hold may have been re-wrapped by `rotate-kek`
# under a key added to the key file after we started; reload the file, but not on every read.
_KEK_RELOAD_INTERVAL_SECONDS: Final = 5.0

T = TypeVar("T")

# Built once: every request that reads or writes encrypted fields runs it.
_LIVE_KEYS: Final = select(_c.dek_version, _c.kek_id, _c.wrapped_dek, _c.retired_at).where(
    _c.owner_id == bindparam("owner_id"), _c.wrapped_dek.is_not(None), _c.destroyed_at.is_(None)
)
_OWNERS_LIVE_KEYS: Final = select(_c.owner_id, _c.dek_version, _c.kek_id, _c.wrapped_dek).where(
    _c.owner_id.in_(bindparam("owner_ids", expanding=True)),
    _c.wrapped_dek.is_not(None),
    _c.destroyed_at.is_(None),
)


class OwnerErasedError(CryptoError):
    """The owner's keys were destroyed (erasure); nothing new may be encrypted for them."""

    message_is_safe_to_log = True


class Keyring:
    """Data keys per owner, stored wrapped in ``data_keys``; unwrapped keys cached in memory."""

    def __init__(
        self,
        kek: KekProvider,
        cache: DekCache | None = None,
        *,
        clock: Clock | None = None,
        kek_loader: Callable[[], KekProvider] | None = None,
    ) -> None:
        """``kek_loader`` (optional) reloads the KEK provider, e.g. from the key file, when a
        wrapped key names a KEK id this process has not loaded (online KEK rotation)."""
        self._kek = kek
        self._cache = cache if cache is not None else DekCache()
        self._clock: Clock = clock or SystemClock()
        self._kek_loader = kek_loader
        self._last_reload = float("-inf")

    def __repr__(self) -> str:
        return f"Keyring(active_kek={self._kek.active_kid!r}, cache={self._cache!r})"

    @property
    def kek(self) -> KekProvider:
        return self._kek

    @property
    def cache(self) -> DekCache:
        return self._cache

    async def create_key(self, session: AsyncSession, owner_id: uuid.UUID) -> int:
        """Create the owner's next DEK version and make it the active one; returns the version.

        The first call for an owner creates version 1. A later call is a DEK rotation step: the
        previous active version is retired (it still decrypts). Refused for an erased owner.
        """
        connection = await session.connection()
        rows = (
            await connection.execute(
                select(_c.dek_version, _c.destroyed_at).where(_c.owner_id == owner_id)
            )
        ).all()
        # Erased = no live version left (``shred``); a version destroyed by DEK rotation
        # (``destroy_version``) beside a live one is not erasure.
        if rows and all(row.destroyed_at is not None for row in rows):
            raise OwnerErasedError(f"data keys of owner {owner_id} were destroyed (erased)")
        version = max((row.dek_version for row in rows), default=0) + 1
        now = self._clock.now()
        dek = generate_dek()
        wrapped = wrap_dek(self._kek, dek, patient_id=str(owner_id), dek_version=version)
        if rows:
            await connection.execute(
                update(DATA_KEYS)
                .where(_c.owner_id == owner_id, _c.retired_at.is_(None))
                .values(retired_at=now)
            )
        await connection.execute(
            DATA_KEYS.insert().values(
                owner_id=owner_id,
                dek_version=version,
                kek_id=wrapped.kek_id,
                wrapped_dek=wrapped.wrapped_dek,
                created_at=now,
            )
        )
        # If the transaction rolls back, the cached key is unreachable: reads check the row first.
        self._cache.put(str(owner_id), version, dek)
        return version

    async def encrypt(
        self,
        session: AsyncSession,
        owner_id: uuid.UUID,
        *,
        table: str,
        column: str,
        row_id: str,
        plaintext: bytes,
    ) -> bytes:
        """Encrypt one column value of one row under the owner's active DEK (format §D.7)."""
        keys = await self.owner_keys(session, owner_id, active_only=True)
        return keys.encrypt(table=table, column=column, row_id=row_id, plaintext=plaintext)

    async def decrypt(
        self,
        session: AsyncSession,
        owner_id: uuid.UUID,
        *,
        table: str,
        column: str,
        row_id: str,
        blob: bytes,
    ) -> bytes:
        """Decrypt a value written by ``encrypt`` for the same owner, table, column and row.

        Uses exactly the DEK version the ciphertext header names. Raises ``UnknownKeyError`` if that
        version is missing or destroyed, ``TamperedCiphertextError`` if authentication fails,
        ``UnsupportedFormatError`` for an unknown format; each is also logged as an alert.
        """
        try:
            header, _ = parse_field(blob)
        except DecryptionError as error:
            _alert(error, owner_id=owner_id, table=table, column=column, row_id=row_id)
            raise
        keys = await self.owner_keys(session, owner_id, versions=(header.dek_version,))
        return keys.decrypt(table=table, column=column, row_id=row_id, blob=blob)

    async def owner_keys(
        self,
        session: AsyncSession,
        owner_id: uuid.UUID,
        *,
        active_only: bool = False,
        versions: tuple[int, ...] | None = None,
    ) -> "OwnerKeys":
        """One query for the owner's live key rows; the result encrypts and decrypts many fields.

        With ``active_only`` the result encrypts under the active version (and still decrypts
        every live version); without it, it only decrypts (``versions`` narrows the read).

        For paths that handle several fields of one owner at once (a submission's answers, a
        clinician's view of a history). Use it within the same request: it reflects the key rows
        as they were when read.
        """
        # Read the cache generation before the rows, so a shred that lands in between keeps its
        # unwrapped key out of the cache (DekCache docstring).
        generation = self._cache.generation
        # ``active_only`` still reads every live version: a writer often decrypts too (a field
        # it rewrites beside one it reads), and during DEK rotation (backend.keyring.dek_rotation)
        # the owner's other rows may still be under the retired version. Keys unwrap lazily.
        connection = await session.connection()
        if versions is not None and not active_only:
            statement = _LIVE_KEYS.where(_c.dek_version.in_(versions))
            rows = (await connection.execute(statement, {"owner_id": owner_id})).all()
        else:
            rows = (await connection.execute(_LIVE_KEYS, {"owner_id": owner_id})).all()
        return self.keys_from_rows(owner_id, rows, generation=generation, active_only=active_only)

    @property
    def generation(self) -> int:
        """The data-key cache's generation: read it *before* reading key rows elsewhere and hand
        it to ``keys_from_rows`` (see ``owner_keys``)."""
        return self._cache.generation

    def keys_from_rows(
        self,
        owner_id: uuid.UUID,
        rows: Iterable[Any],
        *,
        generation: int,
        active_only: bool = False,
    ) -> "OwnerKeys":
        """``owner_keys`` from live key rows (dek_version, kek_id, wrapped_dek, retired_at) a
        caller read itself, in a statement that also read other things (the submission's one
        read of its context)."""
        rows = list(rows)
        wrapped = {int(row.dek_version): (str(row.kek_id), bytes(row.wrapped_dek)) for row in rows}
        current = [int(row.dek_version) for row in rows if row.retired_at is None]
        active = max(current) if active_only and current else None
        return OwnerKeys(self, owner_id, wrapped, active_version=active, generation=generation)

    async def owners_keys(
        self, connection: AsyncConnection, owner_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, "OwnerKeys"]:
        """``owner_keys`` (decrypt only) for many owners in one query: a batch of messages to
        as many patients reads their key rows once, not once per message. Every owner asked
        for has an entry; one with no live key (erased) decrypts nothing, as with ``owner_keys``."""
        ids = sorted(set(owner_ids))
        if not ids:
            return {}
        generation = self._cache.generation  # before the rows, as in ``owner_keys``
        rows = (await connection.execute(_OWNERS_LIVE_KEYS, {"owner_ids": ids})).all()
        wrapped: dict[uuid.UUID, dict[int, tuple[str, bytes]]] = {owner_id: {} for owner_id in ids}
        for row in rows:
            wrapped[row.owner_id][int(row.dek_version)] = (
                str(row.kek_id),
                bytes(row.wrapped_dek),
            )
        return {
            owner_id: OwnerKeys(
                self, owner_id, versions, active_version=None, generation=generation
            )
            for owner_id, versions in wrapped.items()
        }

    async def shred(self, session: AsyncSession, owner_id: uuid.UUID) -> int:
        """Crypto-shredding: destroy every key of the owner; returns how many were destroyed.

        The wrapped keys are erased from the row (the row stays as a record of when); every field
        encrypted for the owner becomes undecryptable (``UnknownKeyError``) once this commits. The
        caller also nulls the owner's blind-index values (§D.6) and records the erasure in the
        audit log. Backups keep wrapped keys until the KEK that wrapped them is rotated away.
        """
        connection = await session.connection()
        result = await connection.execute(
            update(DATA_KEYS)
            .where(_c.owner_id == owner_id, _c.destroyed_at.is_(None))
            .values(wrapped_dek=None, destroyed_at=self._clock.now())
        )
        self._cache.invalidate(str(owner_id))
        destroyed = int(result.rowcount)
        logger.info(
            "data keys destroyed",
            extra={"fields": {"owner": str(owner_id), "destroyed": destroyed}},
        )
        return destroyed

    async def destroy_version(
        self, connection: AsyncConnection, owner_id: uuid.UUID, dek_version: int
    ) -> bool:
        """Destroy one retired version once no row uses it (last step of DEK rotation).

        Refuses the active version: that is erasure, which is ``shred``.
        """
        result = await connection.execute(
            update(DATA_KEYS)
            .where(
                _c.owner_id == owner_id,
                _c.dek_version == dek_version,
                _c.retired_at.is_not(None),
                _c.destroyed_at.is_(None),
            )
            .values(wrapped_dek=None, destroyed_at=self._clock.now())
        )
        self._cache.invalidate(str(owner_id))
        return bool(result.rowcount)

    def _unwrap(
        self, owner_id: uuid.UUID, version: int, kek_id: str, wrapped: bytes, generation: int
    ) -> bytes:
        owner = str(owner_id)
        dek = self._cache.get(owner, version)
        if dek is not None:
            return dek
        if kek_id not in self._kek.kids():
            self._maybe_reload_kek()
        dek = unwrap_dek(
            self._kek, patient_id=owner, dek_version=version, kek_id=kek_id, wrapped_dek=wrapped
        )
        self._cache.put(owner, version, dek, generation=generation)
        return dek

    def _maybe_reload_kek(self) -> None:
        if self._kek_loader is None:
            return
        now = time.monotonic()
        if now - self._last_reload < _KEK_RELOAD_INTERVAL_SECONDS:
            return
        self._last_reload = now
        try:
            self._kek = self._kek_loader()
        except Exception:  # keep the working provider; the unwrap below reports the missing KEK
            logger.warning("could not reload the key-encryption keys", exc_info=True)


class OwnerKeys:
    """One owner's live key rows as read in one query; encrypts and decrypts without more I/O."""

    __slots__ = (
        "_active",
        "_ciphers",
        "_generation",
        "_keyring",
        "_owner",
        "_owner_id",
        "_wrapped",
    )

    def __init__(
        self,
        keyring: Keyring,
        owner_id: uuid.UUID,
        wrapped: dict[int, tuple[str, bytes]],
        *,
        active_version: int | None,
        generation: int,
    ) -> None:
        self._keyring = keyring
        self._owner_id = owner_id
        self._owner = str(owner_id)
        self._wrapped = wrapped
        # Building an AESGCM object costs more than sealing a small field: one per version here,
        # for as long as this object lives (one request or one batch).
        self._ciphers: dict[int, AESGCM] = {}
        self._active = active_version
        self._generation = generation

    @property
    def active_version(self) -> int | None:
        return self._active

    def encrypt(self, *, table: str, column: str, row_id: str, plaintext: bytes) -> bytes:
        if self._active is None:
            raise UnknownKeyError(
                f"owner {self._owner_id} has no active data key (never created, or erased)"
            )
        if not isinstance(plaintext, bytes):
            raise TypeError("plaintext must be bytes")
        return seal_field(
            self._cipher(self._active),
            plaintext,
            dek_version=self._active,
            table=table,
            column=column,
            row_id=row_id,
            patient_id=self._owner,
        )

    def decrypt(self, *, table: str, column: str, row_id: str, blob: bytes) -> bytes:
        try:
            return open_field(
                blob,
                cipher_for=self._cipher,
                table=table,
                column=column,
                row_id=row_id,
                patient_id=self._owner,
            )
        except DecryptionError as error:
            _alert(error, owner_id=self._owner_id, table=table, column=column, row_id=row_id)
            raise

    def decrypt_many(
        self, *, table: str, column: str, row_ids: Sequence[str], blobs: Sequence[bytes]
    ) -> list[bytes]:
        """`decrypt` for many values of one column (`row_ids[i]` is the row of `blobs[i]`), with
        the per-field work shared (`backend.crypto.open_fields`); the same errors and alert."""
        try:
            return open_fields(
                blobs,
                cipher_for=self._cipher,
                table=table,
                column=column,
                row_ids=row_ids,
                patient_id=self._owner,
            )
        except DecryptionError:
            # Rare: find the field that failed one by one, so the alert names its row.
            for row_id, blob in zip(row_ids, blobs, strict=True):
                self.decrypt(table=table, column=column, row_id=row_id, blob=blob)
            raise

    def decrypt_columns(
        self,
        *,
        table: str,
        columns: Sequence[tuple[str, Sequence[bytes]]],
        row_ids: Sequence[str],
    ) -> list[list[bytes]]:
        """`decrypt_many` for several columns of the same rows (`columns[c]` is (column, its
        values), the i-th in row `row_ids[i]`), each row's id encoded once for all its columns
        (`backend.crypto.open_columns`); the same errors and alert."""
        try:
            return open_columns(
                columns,
                cipher_for=self._cipher,
                table=table,
                row_ids=row_ids,
                patient_id=self._owner,
            )
        except DecryptionError:
            # Rare: find the field that failed one by one, so the alert names its row.
            for column, blobs in columns:
                for row_id, blob in zip(row_ids, blobs, strict=True):
                    self.decrypt(table=table, column=column, row_id=row_id, blob=blob)
            raise

    def _cipher(self, version: int) -> AESGCM:
        cipher = self._ciphers.get(version)
        if cipher is None:
            cipher = self._ciphers[version] = AESGCM(self._dek(version))
        return cipher

    def _dek(self, version: int) -> bytes:
        entry = self._wrapped.get(version)
        if entry is None:
            raise UnknownKeyError(
                f"data key version {version} of owner {self._owner_id} does not exist"
                " or was destroyed"
            )
        kek_id, wrapped = entry
        return self._keyring._unwrap(self._owner_id, version, kek_id, wrapped, self._generation)


def _alert(
    error: DecryptionError, *, owner_id: uuid.UUID, table: str, column: str, row_id: str
) -> None:
    # A decryption failure is tampering, a lost key or a bug: never routine, always worth a look.
    # Messages from backend.crypto name what failed and never carry key or plaintext bytes.
    logger.error(
        "decryption failed",
        extra={
            "fields": {
                "alert": "decryption-failed",
                "error": type(error).__name__,
                "owner": str(owner_id),
                "table": table,
                "column": column,
                "row_id": row_id,
            }
        },
    )
