"""Decoded rows are remembered only while their ciphertexts stay byte-for-byte the same, within
bounds, and never past an erasure (backend/keyring/plain_cache.py)."""

import functools
import threading
import uuid

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto import LocalKekProvider, TamperedCiphertextError, UnknownKeyError
from backend.keyring.plain_cache import DecodedRowCache
from backend.keyring.service import Keyring, OwnerKeys

Sessions = async_sessionmaker[AsyncSession]
TABLE = "questionnaire_responses"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    def __init__(self, value: str) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.value


def test_a_hit_needs_the_same_ciphertexts() -> None:
    cache = DecodedRowCache()
    decode = Counter("decoded")
    assert cache.get_or_decode("o", "t", "r", (b"a", b"b"), decode, str) == "decoded"
    assert cache.get_or_decode("o", "t", "r", (b"a", b"b"), decode, str) == "decoded"
    assert decode.calls == 1
    # Re-encrypted (rotation) or altered: decoded again, never the remembered value.
    other = Counter("again")
    assert cache.get_or_decode("o", "t", "r", (b"a", b"c"), other, str) == "again"
    assert other.calls == 1
    # Another owner, table or row never shares an entry.
    for owner, table, row in (("o2", "t", "r"), ("o", "t2", "r"), ("o", "t", "r2")):
        fresh = Counter(f"{owner}{table}{row}")
        assert cache.get_or_decode(owner, table, row, (b"a", b"c"), fresh, str) == fresh.value
        assert fresh.calls == 1


def test_a_value_of_another_type_is_decoded_again() -> None:
    cache = DecodedRowCache()
    cache.get_or_decode("o", "t", "r", (b"a",), lambda: "text", str)
    assert cache.get_or_decode("o", "t", "r", (b"a",), lambda: 7, int) == 7


def test_entries_expire_and_the_size_is_bounded() -> None:
    clock = FakeClock()
    cache = DecodedRowCache(max_entries=3, ttl_seconds=60, clock=clock)
    decode = Counter("v")
    cache.get_or_decode("o", "t", "r", (b"a",), decode, str)
    clock.now += 59.9
    cache.get_or_decode("o", "t", "r", (b"a",), decode, str)
    assert decode.calls == 1
    clock.now += 0.1
    cache.get_or_decode("o", "t", "r", (b"a",), decode, str)
    assert decode.calls == 2
    for n in range(10):
        cache.get_or_decode("o", "t", f"row-{n}", (b"a",), decode, str)
    assert len(cache) == 3


def test_invalidate_drops_one_owner_only() -> None:
    cache = DecodedRowCache()
    cache.get_or_decode("erased", "t", "r1", (b"a",), lambda: "x", str)
    cache.get_or_decode("erased", "t", "r2", (b"a",), lambda: "x", str)
    cache.get_or_decode("kept", "t", "r1", (b"a",), lambda: "y", str)
    assert cache.invalidate("erased") == 2
    assert len(cache) == 1
    again = Counter("x")
    cache.get_or_decode("erased", "t", "r1", (b"a",), again, str)
    assert again.calls == 1


def test_a_value_decoded_while_an_erasure_lands_is_not_stored() -> None:
    cache = DecodedRowCache()

    def decode_during_erasure() -> str:
        cache.invalidate("owner")  # the erasure commits while this decode runs
        return "plaintext"

    assert cache.get_or_decode("owner", "t", "r", (b"a",), decode_during_erasure, str)
    assert len(cache) == 0


def test_a_failing_decode_stores_nothing() -> None:
    cache = DecodedRowCache()

    def fail() -> str:
        raise TamperedCiphertextError("bad")

    with pytest.raises(TamperedCiphertextError):
        cache.get_or_decode("o", "t", "r", (b"a",), fail, str)
    assert len(cache) == 0


def test_concurrent_use_keeps_the_bound() -> None:
    cache = DecodedRowCache(max_entries=50)

    def work(n: int) -> None:
        for i in range(500):
            cache.get_or_decode("o", "t", f"{n}-{i}", (b"a",), lambda: "v", str)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 50


@pytest.mark.parametrize("bad", [0, -1])
def test_bounds_are_validated(bad: int) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        DecodedRowCache(max_entries=bad)
    with pytest.raises(ValueError, match="ttl_seconds"):
        DecodedRowCache(ttl_seconds=bad)


async def _keys(sessions: Sessions, keyring: Keyring, owner: uuid.UUID) -> OwnerKeys:
    async with sessions() as session:
        return await keyring.owner_keys(session, owner, active_only=True)


async def test_decode_row_decrypts_once_and_erasure_forgets(sessions: Sessions) -> None:
    keyring = Keyring(LocalKekProvider.generate())
    owner = uuid.uuid4()
    async with sessions() as session:
        await keyring.create_key(session, owner)
        await session.commit()
    keys = await _keys(sessions, keyring, owner)
    blob = keys.encrypt(table=TABLE, column="score_ct", row_id="r1", plaintext=b"12")
    decrypts = 0

    def decode(keys: OwnerKeys, blob: bytes) -> bytes:
        nonlocal decrypts
        decrypts += 1
        return keys.decrypt(table=TABLE, column="score_ct", row_id="r1", blob=blob)

    for _ in range(3):
        keys = await _keys(sessions, keyring, owner)
        value = keys.decode_row(
            table=TABLE,
            row_id="r1",
            ciphertexts=(blob,),
            decode=functools.partial(decode, keys, blob),
            kind=bytes,
        )
        assert value == b"12"
    assert decrypts == 1

    # A flipped bit is a different ciphertext: decrypted again, and it fails loudly.
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(TamperedCiphertextError):
        keys.decode_row(
            table=TABLE,
            row_id="r1",
            ciphertexts=(tampered,),
            decode=lambda: decode(keys, tampered),
            kind=bytes,
        )

    async with sessions() as session:
        await keyring.shred(session, owner)
        await session.commit()
    assert len(keyring.decoded) == 0
    keys = await _keys(sessions, keyring, owner)
    with pytest.raises(UnknownKeyError):
        keys.decode_row(
            table=TABLE,
            row_id="r1",
            ciphertexts=(blob,),
            decode=lambda: decode(keys, blob),
            kind=bytes,
        )
