"""Graceful shutdown gives a running export back: another instance claims it at once (no lease
to wait out) and produces the same export, on both databases."""

import asyncio
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.config import Settings
from backend.domain.exports import repository
from backend.domain.exports.jobs import EXPORTS_DIR, ExportRunner, Sessions
from backend.keyring.service import Keyring
from tests.conftest import SettingsFactory
from tests.exports.world import build_world, request_export, unpack
from tests.identity.conftest import MovableClock, StaffAccount, runtime_of


@pytest.fixture
def settings(database_url: str, make_settings: SettingsFactory) -> Settings:
    # The app's own runner ticks once at start (no job yet) and not again during the test, so
    # only the runners made here claim the job.
    return make_settings(database_url, timer_interval_seconds="3600")


class _StoppedMidRun(ExportRunner):
    """A runner that halts at its first progress report after writing rows: mid-run, with
    part of the bundle on disk and the lease renewed, where a shutdown finds it."""

    def __init__(
        self, sessions: Sessions, keyring: Keyring, clock: MovableClock, *, data_dir: Path
    ) -> None:
        super().__init__(
            sessions, keyring, clock, data_dir=data_dir, instance="a", group_patients=2
        )
        self.halted = asyncio.Event()

    async def _progress(self, job_id: uuid.UUID, rows: int, percent: int) -> None:
        await super()._progress(job_id, rows, percent)
        if rows > 0:
            self.halted.set()
            await asyncio.Event().wait()


async def _download(
    api: AsyncTestClient[Litestar], account: StaffAccount, job_id: uuid.UUID, target: Path
) -> Path:
    response = await api.get(f"/api/v1/exports/{job_id}/download", headers=account.headers)
    assert response.status_code == 200, response.text
    return unpack(response.content, "zip", target)


async def test_a_runner_closed_mid_export_releases_it_to_another_at_once(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    runtime = runtime_of(api)
    sessions = runtime.require_sessionmaker()
    researcher = world.staff["researcher_a"]
    study = await api.post(
        "/api/v1/exports/studies",
        headers=world.staff["admin_a"].headers,
        json={"name": "release-check", "stable_ids": True},
    )
    assert study.status_code == 201, study.text
    study_id = study.json()["id"]
    job_id = uuid.UUID((await request_export(api, researcher, study_id=study_id))["id"])
    data_dir = runtime.settings.data_dir

    first = _StoppedMidRun(sessions, runtime.keyring, clock, data_dir=data_dir)
    await first.tick()
    await asyncio.wait_for(first.halted.wait(), timeout=60)
    async with sessions() as session:
        running = await repository.get_job(await session.connection(), job_id)
    assert running is not None
    assert (running.state, running.claimed_by, running.attempts) == ("running", "a", 1)
    assert running.progress_rows > 0
    tmp = data_dir / EXPORTS_DIR / "tmp"
    assert list(tmp.glob(f"{job_id}-*")), "the halted attempt has written part of the bundle"

    await first.close()

    async with sessions() as session:
        released = await repository.get_job(await session.connection(), job_id)
    assert released is not None
    assert (released.state, released.claimed_by, released.lease_until) == ("queued", None, None)
    # A shutdown is not a failed attempt; what was done stays visible until the next claim.
    assert released.attempts == 0
    assert (released.progress_rows, released.progress_percent) == (
        running.progress_rows,
        running.progress_percent,
    )
    assert not list(tmp.glob(f"{job_id}-*"))
    shown = await api.get(f"/api/v1/exports/{job_id}", headers=researcher.headers)
    assert shown.json()["state"] == "queued"
    # Releasing again, as a stale instance, is refused: the job is no longer "a"'s.
    async with sessions() as session:
        assert not await repository.release(await session.connection(), job_id, instance="a")
        await session.commit()

    # The clock has not moved: no lease had to run out for the other runner to claim the job.
    second = ExportRunner(
        sessions, runtime.keyring, clock, data_dir=data_dir, instance="b", group_patients=2
    )
    assert await second.run_once() == job_id
    async with sessions() as session:
        done = await repository.get_job(await session.connection(), job_id)
    assert done is not None
    assert (done.state, done.claimed_by, done.attempts) == ("done", None, 1)
    assert done.progress_percent == 100

    # The same content as an export that was never interrupted (a stable-id study: one key).
    resumed = await _download(api, researcher, job_id, tmp_path / "resumed")
    fresh_id = uuid.UUID((await request_export(api, researcher, study_id=study_id))["id"])
    assert await second.run_once() == fresh_id
    fresh = await _download(api, researcher, fresh_id, tmp_path / "fresh")
    for table in ("patients", "sessions", "alerts", "observations"):
        assert pq.read_table(resumed / "parquet" / f"{table}.parquet").equals(
            pq.read_table(fresh / "parquet" / f"{table}.parquet")
        ), table
    assert pq.read_table(resumed / "parquet" / "observations.parquet").num_rows > 0
