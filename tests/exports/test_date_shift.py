"""A limited data set through the API on both databases: shifted times, and no real year."""

from datetime import UTC, timedelta
from pathlib import Path

import polars as pl
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.exports.world import build_world, export_and_download
from tests.identity.conftest import MovableClock


async def test_shifted_dates_come_without_the_real_first_treatment_year(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    job, bundle = await export_and_download(
        api, world.staff["admin_a"], tmp_path / "lds", date_shift=True
    )
    assert job["classification"] == "limited_data_set"
    patients = pl.read_parquet(bundle / "parquet" / "patients.parquet")
    assert patients.height == len(world.consenting)
    assert patients.schema["first_treatment_year"] == pl.Int16
    assert patients["first_treatment_year"].null_count() == patients.height
    sessions = pl.read_parquet(bundle / "parquet" / "sessions.parquet")
    assert sessions["shifted_start"].null_count() == 0
    # Each patient's sessions are shifted back by one whole number of days, 1..364, the same
    # for all of them (intervals survive). Comparing with the course's first day instead failed
    # whenever a later session's patient drew a shift shorter than its offset from that day.
    real = {at for patient in world.consenting for at in patient.timestamps}
    for (study_id,), group in sessions.group_by("study_id"):
        starts = [at.replace(tzinfo=UTC) for at in group["shifted_start"].to_list()]
        shifts = [
            days
            for days in range(1, 365)
            if all(at + timedelta(days=days) in real for at in starts)
        ]
        assert len(shifts) == 1, f"{study_id}: no single shift back in time ({shifts})"
    csv = pl.read_csv(bundle / "csv" / "patients.csv")
    assert csv["first_treatment_year"].null_count() == csv.height
