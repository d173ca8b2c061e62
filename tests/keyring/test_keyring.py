"""Per-owner data keys in the database, on SQLite and PostgreSQL."""

import uuid

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto import (
    DekCache,
    LocalKekProvider,
    TamperedCiphertextError,
    UnknownKeyError,
    parse_field,
)
from backend.keyring.service import DATA_KEYS, Keyring, OwnerErasedError

Sessions = async_sessionmaker[AsyncSession]
FIELD = {"table": "patients", "column": "name_enc"}


class CountingKek:
    """The real local provider, counting unwraps (to observe the cache, not to replace the KEK)."""

    def __init__(self, inner: LocalKekProvider) -> None:
        self.inner = inner
        self.unwraps = 0

    @property
    def active_kid(self) -> str:
        return self.inner.active_kid

    def kids(self) -> frozenset[str]:
        return self.inner.kids()

    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        return self.inner.wrap(dek, aad)

    def unwrap(self, kid: str, wrapped: bytes, aad: bytes) -> bytes:
        self.unwraps += 1
        return self.inner.unwrap(kid, wrapped, aad)


async def _new_owner(sessions: Sessions, keyring: Keyring) -> uuid.UUID:
    owner = uuid.uuid4()
    async with sessions() as session:
        assert await keyring.create_key(session, owner) == 1
        await session.commit()
    return owner


async def _encrypt(
    sessions: Sessions, keyring: Keyring, owner: uuid.UUID, row_id: str, value: bytes
) -> bytes:
    async with sessions() as session:
        return await keyring.encrypt(session, owner, row_id=row_id, plaintext=value, **FIELD)


async def _decrypt(
    sessions: Sessions, keyring: Keyring, owner: uuid.UUID, row_id: str, blob: bytes
) -> bytes:
    async with sessions() as session:
        return await keyring.decrypt(session, owner, row_id=row_id, blob=blob, **FIELD)


async def test_a_value_round_trips_and_the_stored_key_is_only_the_wrapped_one(
    sessions: Sessions,
) -> None:
    keyring = Keyring(LocalKekProvider.generate())
    owner = await _new_owner(sessions, keyring)
    blob = await _encrypt(sessions, keyring, owner, "row-1", b"Ada Lovelace")
    assert b"Ada" not in blob
    assert parse_field(blob)[0].dek_version == 1
    assert await _decrypt(sessions, keyring, owner, "row-1", blob) == b"Ada Lovelace"

    cached = keyring.cache.get(str(owner), 1)
    assert cached is not None
    async with sessions() as session:
        connection = await session.connection()
        row = (await connection.execute(select(DATA_KEYS))).one()
    assert row.kek_id == keyring.kek.active_kid
    assert row.wrapped_dek is not None
    assert cached not in bytes(row.wrapped_dek)
    assert (row.retired_at, row.destroyed_at) == (None, None)


async def test_a_ciphertext_moved_to_another_row_or_owner_fails(sessions: Sessions) -> None:
    keyring = Keyring(LocalKekProvider.generate())
    owner, other = await _new_owner(sessions, keyring), await _new_owner(sessions, keyring)
    blob = await _encrypt(sessions, keyring, owner, "row-1", b"07700 900123")
    with pytest.raises(TamperedCiphertextError):
        await _decrypt(sessions, keyring, owner, "row-2", blob)
    with pytest.raises(TamperedCiphertextError):
        await _decrypt(sessions, keyring, other, "row-1", blob)


async def test_a_wrapped_key_copied_to_another_owner_does_not_unwrap(sessions: Sessions) -> None:
    keyring = Keyring(LocalKekProvider.generate())
    owner, other = await _new_owner(sessions, keyring), await _new_owner(sessions, keyring)
    async with sessions() as session:
        connection = await session.connection()
        stolen = (
            await connection.execute(
                select(DATA_KEYS.c.wrapped_dek).where(DATA_KEYS.c.owner_id == owner)
            )
        ).scalar_one()
        await connection.execute(
            update(DATA_KEYS).where(DATA_KEYS.c.owner_id == other).values(wrapped_dek=stolen)
        )
        await session.commit()
    keyring.cache.clear()
    with pytest.raises(TamperedCiphertextError):
        await _encrypt(sessions, keyring, other, "row-1", b"x")


async def test_unwrapped_keys_are_cached_but_the_key_row_is_read_every_time(
    sessions: Sessions,
) -> None:
    kek = CountingKek(LocalKekProvider.generate())
    writer = Keyring(kek)
    owner = await _new_owner(sessions, writer)
    blob = await _encrypt(sessions, writer, owner, "row-1", b"value")

    reader = Keyring(kek, DekCache(max_entries=8, ttl_seconds=60))
    before = kek.unwraps
    for _ in range(3):
        assert await _decrypt(sessions, reader, owner, "row-1", blob) == b"value"
    assert kek.unwraps == before + 1

    # Another instance shreds: this instance's warm cache must not keep the data readable.
    async with sessions() as session:
        assert await writer.shred(session, owner) == 1
        await session.commit()
    assert reader.cache.get(str(owner), 1) is not None
    with pytest.raises(UnknownKeyError):
        await _decrypt(sessions, reader, owner, "row-1", blob)


async def test_shred_makes_every_version_unreadable_and_refuses_new_keys(
    sessions: Sessions,
) -> None:
    keyring = Keyring(LocalKekProvider.generate())
    owner = await _new_owner(sessions, keyring)
    survivor = await _new_owner(sessions, keyring)
    old = await _encrypt(sessions, keyring, owner, "row-1", b"first")
    async with sessions() as session:
        assert await keyring.create_key(session, owner) == 2
        await session.commit()
    new = await _encrypt(sessions, keyring, owner, "row-2", b"second")
    assert parse_field(new)[0].dek_version == 2
    assert await _decrypt(sessions, keyring, owner, "row-1", old) == b"first"
    kept = await _encrypt(sessions, keyring, survivor, "row-3", b"kept")

    async with sessions() as session:
        assert await keyring.shred(session, owner) == 2
        await session.commit()
    assert keyring.cache.get(str(owner), 1) is None
    for row_id, blob in (("row-1", old), ("row-2", new)):
        with pytest.raises(UnknownKeyError):
            await _decrypt(sessions, keyring, owner, row_id, blob)
    with pytest.raises(UnknownKeyError):
        await _encrypt(sessions, keyring, owner, "row-4", b"new")
    async with sessions() as session:
        with pytest.raises(OwnerErasedError):
            await keyring.create_key(session, owner)
        assert await keyring.shred(session, owner) == 0
        connection = await session.connection()
        rows = (
            await connection.execute(select(DATA_KEYS).where(DATA_KEYS.c.owner_id == owner))
        ).all()
    assert len(rows) == 2
    assert all(row.wrapped_dek is None and row.destroyed_at is not None for row in rows)
    assert await _decrypt(sessions, keyring, survivor, "row-3", kept) == b"kept"


async def test_a_version_that_never_existed_is_an_unknown_key(sessions: Sessions) -> None:
    keyring = Keyring(LocalKekProvider.generate())
    owner = await _new_owner(sessions, keyring)
    blob = await _encrypt(sessions, keyring, owner, "row-1", b"value")
    forged = blob[:2] + (7).to_bytes(4, "big") + blob[6:]
    with pytest.raises(UnknownKeyError, match="version 7"):
        await _decrypt(sessions, keyring, owner, "row-1", forged)
    with pytest.raises(UnknownKeyError):
        await _encrypt(sessions, keyring, uuid.uuid4(), "row-1", b"no key yet")


async def test_a_rolled_back_key_does_not_exist(sessions: Sessions) -> None:
    keyring = Keyring(LocalKekProvider.generate())
    owner = uuid.uuid4()
    async with sessions() as session:
        await keyring.create_key(session, owner)
        await session.rollback()
    with pytest.raises(UnknownKeyError):
        await _encrypt(sessions, keyring, owner, "row-1", b"value")


async def test_owner_keys_encrypts_many_fields_after_one_read(sessions: Sessions) -> None:
    keyring = Keyring(LocalKekProvider.generate())
    owner = await _new_owner(sessions, keyring)
    async with sessions() as session:
        keys = await keyring.owner_keys(session, owner, active_only=True)
    blobs = [
        keys.encrypt(table="responses", column="answers", row_id=str(i), plaintext=bytes([i]))
        for i in range(5)
    ]
    async with sessions() as session:
        everything = await keyring.owner_keys(session, owner)
    assert [
        everything.decrypt(table="responses", column="answers", row_id=str(i), blob=blob)
        for i, blob in enumerate(blobs)
    ] == [bytes([i]) for i in range(5)]
