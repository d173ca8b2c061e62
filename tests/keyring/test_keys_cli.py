"""``interlude keys status | rotate-kek`` as an operator runs them."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.crypto import generate_key_material, load_key_file
from backend.db.engine import create_sessionmaker
from backend.keyring.service import Keyring
from backend.system.keys import load_kek
from tests.conftest import SettingsFactory

ROOT = Path(__file__).resolve().parents[2]
FIELD = {"table": "staff_members", "column": "email_enc"}


def _interlude(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INTERLUDE_")}
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        env={**base, "PYTHONPATH": str(ROOT), "INTERLUDE_LOG_LEVEL": "ERROR", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_status_and_rotate_kek_with_the_key_file(
    engine: AsyncEngine, database_url: str, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(database_url)
    env = dict(make_settings.env(database_url))
    old = load_kek(settings)  # creates the development key file, as a first start would
    keyring = Keyring(old)
    sessions = create_sessionmaker(engine)
    owners = [uuid.uuid4() for _ in range(5)]
    async with sessions() as session:
        blobs = []
        for owner in owners:
            await keyring.create_key(session, owner)
            blobs.append(
                await keyring.encrypt(session, owner, row_id="1", plaintext=b"a@b.c", **FIELD)
            )
        await session.commit()

    status = await asyncio.to_thread(_interlude, ["keys", "status"], env, tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"active KEK: {old.active_kid}" in status.stdout
    assert "data keys: 5 active, 0 retired, 0 destroyed" in status.stdout

    rotate = await asyncio.to_thread(
        _interlude, ["keys", "rotate-kek", "--batch-size", "2"], env, tmp_path
    )
    assert rotate.returncode == 0, rotate.stderr
    lines = rotate.stdout.splitlines()
    new_kid = load_key_file(settings.kek_file, create=False)[0].active_kid
    assert new_kid != old.active_kid
    assert lines[0] == f"added KEK {new_kid} to {settings.kek_file} and made it active"
    assert "re-wrapped 2 data keys, 3 to go" in lines
    assert "re-wrapped 4 data keys, 1 to go" in lines
    assert f"done: 5 data keys re-wrapped under KEK {new_kid}" in lines
    assert f"no live data key uses KEK {old.active_kid} any more" in rotate.stdout

    resumed = await asyncio.to_thread(_interlude, ["keys", "rotate-kek", "--resume"], env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "added KEK" not in resumed.stdout
    assert f"done: 0 data keys re-wrapped under KEK {new_kid}" in resumed.stdout

    after = await asyncio.to_thread(_interlude, ["keys", "status"], env, tmp_path)
    assert f"KEK {old.active_kid}: 0 live data keys  (wraps nothing: can be removed)" in (
        after.stdout
    )
    assert f"KEK {new_kid}: 5 live data keys  (active)" in after.stdout
    reader = Keyring(load_key_file(settings.kek_file, create=False)[0])
    async with sessions() as session:
        for owner, blob in zip(owners, blobs, strict=True):
            assert await reader.decrypt(session, owner, row_id="1", blob=blob, **FIELD) == b"a@b.c"


async def test_a_kek_that_is_not_loaded_is_exit_1(
    engine: AsyncEngine, database_url: str, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        await Keyring(load_kek(make_settings(database_url))).create_key(session, uuid.uuid4())
        await session.commit()
    env = dict(make_settings.env(database_url, kek=generate_key_material("other")))

    status = await asyncio.to_thread(_interlude, ["keys", "status"], env, tmp_path)
    assert status.returncode == 1
    assert "NOT LOADED" in status.stdout

    rotate = await asyncio.to_thread(_interlude, ["keys", "rotate-kek"], env, tmp_path)
    assert rotate.returncode == 1
    assert rotate.stderr.startswith("interlude: key rotation stopped: ")
    assert "Traceback" not in rotate.stderr
