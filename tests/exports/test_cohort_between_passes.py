"""The k-anonymity gate clears a cohort in the first pass; the second pass must export that same
cohort. A patient who leaves it in between (consent withdrawn, erased) would shrink a class the
gate cleared below k, so the export starts again instead of writing it."""

from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from backend.db.models.patient import Patient
from backend.domain.exports.deid import CohortChanged
from backend.domain.exports.jobs import ExportSpec, produce_bundle
from tests.exports.world import build_world
from tests.identity.conftest import MovableClock, runtime_of


async def test_consent_withdrawn_after_the_gate_makes_the_export_start_again(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    runtime = runtime_of(api)
    sessions = runtime.require_sessionmaker()
    clinic_id = world.staff["researcher_a"].clinic_id
    assert clinic_id is not None
    # The six consenting patients are one class: with two of them gone, four would be left.
    leaving = [patient.id for patient in world.consenting[:2]]
    withdrawn: list[bool] = []

    async def withdraw_once_the_gate_has_read(rows: int, percent: int) -> None:
        if withdrawn or rows or percent < 10:
            return
        withdrawn.append(True)
        async with sessions() as session:
            connection = await session.connection()
            await connection.execute(
                update(Patient).where(Patient.id.in_(leaving)).values(research_consent=False)  # type: ignore[attr-defined]
            )
            await session.commit()

    with pytest.raises(CohortChanged):
        await produce_bundle(
            sessions,
            runtime.keyring,
            ExportSpec(name="withdrawal", clinic_ids=(clinic_id,)),
            key=b"k" * 32,
            directory=tmp_path / "bundle",
            progress=withdraw_once_the_gate_has_read,
        )
    assert withdrawn
