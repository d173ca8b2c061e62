"""The write pass reads responses in bounded pages: however small the pages and groups, the
files hold the same rows in the same order (each patient's responses by when answered)."""

import os
from pathlib import Path

import pyarrow.parquet as pq
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.exports.jobs import ExportSpec, produce_bundle
from backend.domain.exports.writers import ExportFormats
from tests.exports.world import RESPONSES_PER_PATIENT, build_world
from tests.identity.conftest import MovableClock, runtime_of


async def test_pages_and_groups_of_any_size_give_the_same_files(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    runtime = runtime_of(api)
    clinic_id = world.staff["researcher_a"].clinic_id
    assert clinic_id is not None
    spec = ExportSpec(
        name="paging",
        clinic_ids=(clinic_id,),
        formats=ExportFormats(parquet=True, csv=True),
    )
    key = os.urandom(32)
    tables = {}
    # A page smaller than one patient's history, a page ending inside a group, and the default.
    for label, group_patients, page_rows in (("tiny", 2, 2), ("odd", 4, 5), ("default", 64, 4096)):
        await produce_bundle(
            runtime.require_sessionmaker(),
            runtime.keyring,
            spec,
            key=key,
            directory=tmp_path / label,
            group_patients=group_patients,
            page_rows=page_rows,
        )
        tables[label] = {
            name: pq.read_table(tmp_path / label / "parquet" / f"{name}.parquet")
            for name in ("patients", "sessions", "observations", "alerts")
        }
        assert (tmp_path / label / "csv" / "observations.csv").read_bytes() == (
            tmp_path / "tiny" / "csv" / "observations.csv"
        ).read_bytes()
    assert tables["tiny"] == tables["odd"] == tables["default"]
    totals = [r for r in tables["tiny"]["observations"].to_pylist() if r["kind"] == "total"]
    assert len(totals) == len(world.consenting) * RESPONSES_PER_PATIENT
    by_patient: dict[str, list[float]] = {}
    for row in totals:
        by_patient.setdefault(row["study_id"], []).append(row["hours_since_course_start"])
    assert all(hours == sorted(hours) for hours in by_patient.values())
