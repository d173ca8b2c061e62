"""``interlude export``: the operator's export, run as a real process against the same database."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import SettingsFactory
from tests.exports.world import build_world, export_and_download
from tests.identity.conftest import MovableClock

ROOT = Path(__file__).resolve().parents[2]


def _interlude(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INTERLUDE_")}
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        env={**clean, "PYTHONPATH": str(ROOT), "INTERLUDE_LOG_LEVEL": "WARNING", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ids(bundle: Path) -> set[str]:
    return set(
        pq.read_table(bundle / "parquet" / "patients.parquet").column("study_id").to_pylist()
    )


async def test_operator_export_writes_the_same_cohort_to_a_directory(
    api: AsyncTestClient[Litestar],
    clock: MovableClock,
    database_url: str,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    world = await build_world(api, clock)
    env = dict(make_settings.env(database_url))
    study = await api.post(
        "/api/v1/exports/studies",
        headers=world.staff["admin_a"].headers,
        json={"name": "cli-study", "stable_ids": True},
    )
    out = tmp_path / "by-clinic"
    ran = _interlude(
        ["export", "--clinic", "Export Clinic A", "--out", str(out), "--formats", "parquet,csv"],
        env,
    )
    assert ran.returncode == 0, ran.stderr
    assert "k achieved: 6" in ran.stdout
    assert len(_ids(out)) == len(world.consenting)
    assert (out / "MANIFEST.sha256").exists()
    for patient in world.patients:
        assert patient.name not in ran.stdout + ran.stderr

    by_study = _interlude(["export", "--study", "cli-study", "--out", str(tmp_path / "s")], env)
    assert by_study.returncode == 0, by_study.stderr
    _job, api_bundle = await export_and_download(
        api, world.staff["researcher_a"], tmp_path / "api", study_id=study.json()["id"]
    )
    assert _ids(tmp_path / "s") == _ids(api_bundle)
    assert not _ids(out) & _ids(api_bundle)

    refused = _interlude(
        ["export", "--clinic", str(world.clinic_b), "--out", str(tmp_path / "b")], env
    )
    assert refused.returncode == 1
    assert "fewer than k = 5" in refused.stderr
    assert not (tmp_path / "b").exists()  # nothing that could pass for an export
    not_empty = _interlude(["export", "--clinic", str(world.clinic_a), "--out", str(out)], env)
    assert not_empty.returncode == 1
