"""The background runner: a job whose instance died is finished by another once the lease runs
out, with the same result; results expire and their files are deleted."""

import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.exports import repository, service
from backend.domain.exports.jobs import EXPORTS_DIR, ExportRunner
from backend.domain.exports.schemas import ExportRequest
from backend.identity.principal import Principal
from tests.exports.world import build_world, export_and_download, unpack, wait_for
from tests.identity.conftest import MovableClock, StaffAccount, log_in, runtime_of


def _principal(account: StaffAccount) -> Principal:
    return Principal(
        subject_id=account.id,
        role=account.role,
        clinic_id=account.clinic_id,
        session_id=uuid.uuid4(),
    )


async def test_a_crashed_job_is_picked_up_again_and_gives_the_same_export(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    runtime = runtime_of(api)
    researcher = world.staff["researcher_a"]
    study = await api.post(
        "/api/v1/exports/studies",
        headers=world.staff["admin_a"].headers,
        json={"name": "resume-check", "stable_ids": True},
    )
    study_id = uuid.UUID(study.json()["id"])
    # An instance claims the job, writes part of it and dies (its lease still runs for an hour).
    async with runtime.require_sessionmaker()() as session:
        job = await service.request_export(
            session, runtime, _principal(researcher), ExportRequest(study_id=study_id)
        )
        claimed = await repository.claim_next(
            await session.connection(),
            instance="dead-instance",
            now=clock.now(),
            lease=timedelta(hours=1),
        )
        assert claimed is not None
        assert claimed.id == job.id
        await session.commit()
    exports_dir = runtime.settings.data_dir / EXPORTS_DIR
    partial = exports_dir / "tmp" / f"{job.id}-1" / "bundle" / "parquet"
    partial.mkdir(parents=True)
    (partial / "observations.parquet").write_bytes(b"PAR1 half a file")
    running = await wait_for(api, researcher, str(job.id), frozenset({"running"}))
    assert running["percent"] == 0
    # The lease runs out: this instance's runner takes the job over and starts it again.
    clock.advance(hours=2)
    await log_in(api, researcher, clock)
    done = await wait_for(api, researcher, str(job.id))
    assert done["state"] == "done", done
    assert not (exports_dir / "tmp" / f"{job.id}-1").exists()
    async with runtime.require_sessionmaker()() as session:
        row = await repository.get_job(await session.connection(), job.id)
        assert row is not None
        assert row.attempts == 2
        assert row.claimed_by is None
        # The dead instance, back, can no longer touch the job.
        assert not await repository.record_progress(
            await session.connection(),
            job.id,
            instance="dead-instance",
            rows=1,
            percent=1,
            lease_until=clock.now(),
        )
    download = await api.get(f"/api/v1/exports/{job.id}/download", headers=researcher.headers)
    assert download.status_code == 200
    resumed = unpack(download.content, "zip", tmp_path / "resumed")
    _again, fresh = await export_and_download(
        api, researcher, tmp_path / "fresh", study_id=str(study_id)
    )
    for table in ("patients", "sessions", "observations"):
        assert pq.read_table(resumed / "parquet" / f"{table}.parquet").equals(
            pq.read_table(fresh / "parquet" / f"{table}.parquet")
        ), table


async def test_results_expire_and_their_files_are_deleted(
    api: AsyncTestClient[Litestar], clock: MovableClock
) -> None:
    world = await build_world(api, clock)
    runtime = runtime_of(api)
    researcher = world.staff["researcher_a"]
    jobs = []
    for _ in range(2):
        response = await api.post("/api/v1/exports", headers=researcher.headers, json={})
        jobs.append(await wait_for(api, researcher, response.json()["id"]))
    kept, taken = jobs
    assert (
        await api.get(f"/api/v1/exports/{taken['id']}/download", headers=researcher.headers)
    ).status_code == 200
    files = sorted((runtime.settings.data_dir / EXPORTS_DIR).glob("*.zip"))
    assert len(files) == 2
    runner = ExportRunner(
        runtime.require_sessionmaker(),
        runtime.keyring,
        clock,
        data_dir=runtime.settings.data_dir,
        instance="cleaner",
    )
    assert await runner.purge() == 0  # the download may still be streaming
    clock.advance(minutes=11)
    assert await runner.purge() == 1  # the downloaded one; the other is still on offer
    assert [f.name for f in (runtime.settings.data_dir / EXPORTS_DIR).glob("*.zip")] == [
        f"{kept['id']}.zip"
    ]
    clock.advance(days=8)
    assert await runner.purge() == 1
    await log_in(api, researcher, clock)
    assert not list((runtime.settings.data_dir / EXPORTS_DIR).glob("*.zip"))
    expired = await api.get(f"/api/v1/exports/{kept['id']}", headers=researcher.headers)
    assert expired.json()["state"] == "expired"
    gone = await api.get(f"/api/v1/exports/{kept['id']}/download", headers=researcher.headers)
    assert gone.status_code == 410
