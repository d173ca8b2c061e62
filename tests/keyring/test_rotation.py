"""KEK rotation: interrupted halfway, resumed, old KEK removed, and every field still decrypts."""

import json
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.crypto import UnknownKeyError, add_key_to_file, load_key_file
from backend.keyring.rotation import RewrapProgress, key_status, rewrap_data_keys
from backend.keyring.service import Keyring

Sessions = async_sessionmaker[AsyncSession]
FIELD = {"table": "patients", "column": "name_enc"}


class Interrupted(Exception):
    pass


def _remove_key_from_file(path: Path, kid: str) -> None:
    """What an operator does by hand once `keys status` says a KEK wraps nothing."""
    document = json.loads(path.read_text())
    document["keys"] = [entry for entry in document["keys"] if entry["kid"] != kid]
    assert document["active_kid"] != kid
    fd = os.open(path.with_suffix(".new"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle)
    os.replace(path.with_suffix(".new"), path)


async def test_rotation_interrupted_resumed_then_old_kek_removed(
    engine: AsyncEngine, sessions: Sessions, tmp_path: Path
) -> None:
    key_file = tmp_path / "kek.json"
    old_provider, _ = load_key_file(key_file, create=True)
    old_kid = old_provider.active_kid
    keyring = Keyring(old_provider)
    owners = [uuid.uuid4() for _ in range(7)]
    fields: dict[uuid.UUID, bytes] = {}
    async with sessions() as session:
        for n, owner in enumerate(owners):
            await keyring.create_key(session, owner)
            if n == 0:
                await keyring.create_key(session, owner)  # a retired version is re-wrapped too
            fields[owner] = await keyring.encrypt(
                session, owner, row_id=str(owner), plaintext=f"name {n}".encode(), **FIELD
            )
        erased = uuid.uuid4()
        await keyring.create_key(session, erased)
        await keyring.shred(session, erased)
        await session.commit()

    new_kid = add_key_to_file(key_file)
    provider, _ = load_key_file(key_file, create=False)
    assert provider.active_kid == new_kid
    before = await key_status(engine, provider)
    assert before.to_rewrap == 8
    assert (before.active, before.retired, before.destroyed) == (7, 1, 1)

    seen: list[RewrapProgress] = []

    def stop_after_first_batch(step: RewrapProgress) -> None:
        seen.append(step)
        raise Interrupted

    with pytest.raises(Interrupted):
        await rewrap_data_keys(engine, provider, batch_size=3, on_progress=stop_after_first_batch)
    assert seen == [RewrapProgress(rewrapped=3, remaining=5)]
    halfway = await key_status(engine, provider)
    assert halfway.live_keys_by_kek == {old_kid: 5, new_kid: 3}

    # An instance started before the rotation (old key only) keeps reading: it reloads the file
    # when a data key names the new KEK.
    running = Keyring(old_provider, kek_loader=lambda: load_key_file(key_file, create=False)[0])
    async with sessions() as session:
        for owner in owners:
            decrypted = await running.decrypt(
                session, owner, row_id=str(owner), blob=fields[owner], **FIELD
            )
            assert decrypted.startswith(b"name ")

    progress: list[RewrapProgress] = []
    assert await rewrap_data_keys(engine, provider, batch_size=3, on_progress=progress.append) == 5
    assert [step.remaining for step in progress] == [2, 0]
    assert await rewrap_data_keys(engine, provider) == 0  # nothing left: a re-run is a no-op
    after = await key_status(engine, provider)
    assert after.live_keys_by_kek == {new_kid: 8}
    assert after.removable_keks == [old_kid]

    _remove_key_from_file(key_file, old_kid)
    only_new, _ = load_key_file(key_file, create=False)
    assert only_new.kids() == frozenset({new_kid})
    assert (await key_status(engine, only_new)).missing_keks == []
    fresh = Keyring(only_new)
    async with sessions() as session:
        for n, owner in enumerate(owners):
            plaintext = await fresh.decrypt(
                session, owner, row_id=str(owner), blob=fields[owner], **FIELD
            )
            assert plaintext == f"name {n}".encode()

    # And the old KEK alone no longer opens anything: the rotation really moved the keys.
    stale = Keyring(old_provider)
    async with sessions() as session:
        with pytest.raises(UnknownKeyError):
            await stale.decrypt(
                session, owners[0], row_id=str(owners[0]), blob=fields[owners[0]], **FIELD
            )


async def test_a_missing_kek_stops_the_rotation_and_is_reported(
    engine: AsyncEngine, sessions: Sessions, tmp_path: Path
) -> None:
    first, _ = load_key_file(tmp_path / "a.json", create=True)
    unrelated, _ = load_key_file(tmp_path / "b.json", create=True)
    async with sessions() as session:
        await Keyring(first).create_key(session, uuid.uuid4())
        await session.commit()
    status = await key_status(engine, unrelated)
    assert status.missing_keks == [first.active_kid]
    with pytest.raises(UnknownKeyError):
        await rewrap_data_keys(engine, unrelated)
