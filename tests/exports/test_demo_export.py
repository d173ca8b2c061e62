"""The newcomer's path: ``interlude demo`` then ``interlude export`` gives a real de-identified
bundle of the consenting demo patients (a few decline, and they are left out)."""

from pathlib import Path

import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col

from backend.db.models.patient import Patient
from tests.conftest import SettingsFactory
from tests.exports.test_export_cli import _interlude

# Enough for k = 5 with modality, session count and alert flags kept exact; the default 10
# patients are refused by the gate (shown in the second half).
PATIENTS = 60


async def _consenting(database_url: str) -> tuple[int, int]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            yes = await connection.scalar(
                select(func.count())
                .select_from(Patient)
                .where(col(Patient.research_consent).is_(True))
            )
            total = await connection.scalar(select(func.count()).select_from(Patient))
    finally:
        await engine.dispose()
    return int(yes or 0), int(total or 0)


async def test_demo_clinic_exports_its_consenting_patients(
    database_url: str, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    env = dict(make_settings.env(database_url))
    seeded = _interlude(["demo", "--patients", str(PATIENTS)], env)
    assert seeded.returncode == 0, seeded.stderr
    consenting, total = await _consenting(database_url)
    assert total == PATIENTS
    assert 0 < consenting < total  # most agreed, some declined

    out = tmp_path / "bundle"
    ran = _interlude(["export", "--clinic", "Interlude demo clinic", "--out", str(out)], env)
    assert ran.returncode == 0, ran.stderr
    exported = pq.read_table(out / "parquet" / "patients.parquet").num_rows
    # Only consenting patients; the k-anonymity gate may leave out up to 10 % of them.
    assert 0.9 * consenting <= exported <= consenting
    written = b"".join(path.read_bytes() for path in out.rglob("*") if path.is_file())
    for index in range(1, PATIENTS + 1):
        assert f"demo.patient{index}@example.org".encode() not in written
        assert f"DEMO-{index:04d}".encode() not in written


async def test_default_demo_clinic_is_too_small_for_k_anonymity(
    database_url: str, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    env = dict(make_settings.env(database_url))
    assert _interlude(["demo"], env).returncode == 0
    refused = _interlude(
        ["export", "--clinic", "Interlude demo clinic", "--out", str(tmp_path / "b")], env
    )
    assert refused.returncode == 1
    assert "k = 5 is not reachable" in refused.stderr
    assert not (tmp_path / "b" / "parquet").exists()
