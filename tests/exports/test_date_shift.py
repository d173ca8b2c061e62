"""A limited data set through the API on both databases: shifted times, and no real year."""

from pathlib import Path

import polars as pl
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.exports.world import COURSE_START, build_world, export_and_download
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
    assert (sessions["shifted_start"] < COURSE_START).all(), "shifted back in time"
    csv = pl.read_csv(bundle / "csv" / "patients.csv")
    assert csv["first_treatment_year"].null_count() == csv.height
