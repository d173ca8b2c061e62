"""``interlude audit verify`` as an operator runs it: a real process, a one-line verdict."""

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit.sealer import seal_pending
from backend.audit.service import record_audit
from backend.db.engine import create_sessionmaker
from tests.audit.test_audit_log import _event, _tamper
from tests.conftest import SettingsFactory
from tests.support import ManualClock

ROOT = Path(__file__).resolve().parents[2]


def _verify(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INTERLUDE_")}
    return subprocess.run(
        [sys.executable, "-m", "backend", "audit", "verify", *args],
        env={**base, "PYTHONPATH": str(ROOT), "INTERLUDE_LOG_LEVEL": "ERROR", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_verify_exits_0_when_intact_and_1_when_tampered_or_left_unsealed(
    engine: AsyncEngine,
    database_url: str,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    sessions = create_sessionmaker(engine)
    for n in range(1, 4):
        async with sessions() as session:
            await record_audit(session, _event(n))  # recorded in 2026-11-22 09:00: long ago
            await session.commit()
    env = dict(make_settings.env(database_url))

    unsealed = await asyncio.to_thread(_verify, env, tmp_path)
    assert unsealed.returncode == 1
    [line] = unsealed.stdout.splitlines()
    assert line.startswith("audit log BROKEN at chain clinic:")
    assert "is the audit sealer running?" in line

    assert await seal_pending(engine, ManualClock()) == 3
    intact = await asyncio.to_thread(_verify, env, tmp_path)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.splitlines() == ["audit log intact: 3 events in 1 chains verified"]

    async with sessions() as session:
        await record_audit(session, _event(4, at=datetime.now(UTC)))
        await session.commit()
    pending = await asyncio.to_thread(_verify, env, tmp_path)
    assert pending.returncode == 0, pending.stderr
    assert pending.stdout.splitlines() == [
        "audit log intact: 3 events in 1 chains verified, 1 recent events pending sealing"
    ]
    stale = await asyncio.to_thread(_verify, env, tmp_path, "--grace-seconds", "0")
    assert stale.returncode == 1
    assert "older than the sealing grace period" in stale.stdout

    await _tamper(engine, "UPDATE audit_events SET purpose = 'curiosity' WHERE seq = 2")
    broken = await asyncio.to_thread(_verify, env, tmp_path)
    assert broken.returncode == 1
    [line] = broken.stdout.splitlines()
    assert line.startswith("audit log BROKEN at chain clinic:")
    assert "event 2" in line
    assert "altered" in line
