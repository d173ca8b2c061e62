"""Research consent withdrawn through the consent route between an export's request and its
run (both databases): the export reads consent when it runs, so the patient is not in it."""

import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.exports import repository, service
from backend.domain.exports.schemas import ExportRequest
from backend.identity.principal import Principal
from tests.exports.world import build_world, unpack, wait_for
from tests.identity.conftest import MovableClock, log_in, runtime_of


async def test_an_export_queued_before_a_withdrawal_and_run_after_it_leaves_the_patient_out(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    runtime = runtime_of(api)
    researcher, clinician = world.staff["researcher_a"], world.staff["clinician_a"]
    leaving = world.consenting[0]
    # The export is requested, and an instance that then stops holds it: it cannot run yet.
    async with runtime.require_sessionmaker()() as session:
        job = await service.request_export(
            session,
            runtime,
            Principal(
                subject_id=researcher.id,
                role=researcher.role,
                clinic_id=researcher.clinic_id,
                session_id=uuid.uuid4(),
            ),
            ExportRequest(),
        )
        claimed = await repository.claim_next(
            await session.connection(),
            instance="stopped-instance",
            now=clock.now(),
            lease=timedelta(hours=1),
        )
        assert claimed is not None
        assert claimed.id == job.id
        await session.commit()

    url = f"/api/v1/patients/{leaving.id}/consent"
    read = await api.get(url, headers=clinician.headers)
    assert read.status_code == 200, read.text
    assert read.json()["research_consent"] is True
    withdrawn = await api.put(
        url,
        headers={**clinician.headers, "If-Match": read.headers["etag"]},
        json={"monitoring_consent": True, "research_consent": False},
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["research_consent"] is False

    # The lease runs out; this instance's runner takes the job and runs it now.
    clock.advance(hours=2)
    await log_in(api, researcher, clock)
    done = await wait_for(api, researcher, str(job.id))
    assert done["state"] == "done", done
    download = await api.get(f"/api/v1/exports/{job.id}/download", headers=researcher.headers)
    assert download.status_code == 200, download.text
    bundle = unpack(download.content, "zip", tmp_path / "bundle")
    patients = pq.read_table(bundle / "parquet" / "patients.parquet")
    assert patients.num_rows == len(world.consenting) - 1
    # Nothing of the patient who left, in any file.
    everything = b"".join(p.read_bytes() for p in bundle.rglob("*") if p.is_file())
    for value in (str(leaving.id), *leaving.identifying_strings()):
        assert value.encode() not in everything
