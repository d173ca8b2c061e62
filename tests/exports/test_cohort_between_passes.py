"""The k-anonymity gate clears a cohort in the first pass; the second pass must export that same
cohort. A patient who leaves it in between (consent withdrawn, erased) would shrink a class the
gate cleared below k, so the export starts again instead of writing it."""

from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from backend.db.models.patient import Patient
from backend.domain.exports.cli import write_bundle
from backend.domain.exports.deid import CohortChanged
from backend.domain.exports.jobs import ExportSpec, produce_bundle
from backend.domain.exports.kanon import ExportRefused
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


async def test_the_operator_command_runs_again_and_leaves_no_partial_bundle(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    """`interlude export` (`cli.write_bundle`): the first run meets the change and starts again
    from an empty directory; the second finds too few patients left and is refused. Neither
    leaves a file behind: a folder without its manifest would pass for an export."""
    world = await build_world(api, clock)
    runtime = runtime_of(api)
    sessions = runtime.require_sessionmaker()
    clinic_id = world.staff["researcher_a"].clinic_id
    assert clinic_id is not None
    leaving = [patient.id for patient in world.consenting[:2]]
    gates: list[int] = []

    async def withdraw_during_the_first_run(rows: int, percent: int) -> None:
        if rows == 0 and percent >= 10:
            gates.append(percent)
        if len(gates) != 1:
            return
        gates.append(-1)  # once
        async with sessions() as session:
            connection = await session.connection()
            await connection.execute(
                update(Patient).where(Patient.id.in_(leaving)).values(research_consent=False)  # type: ignore[attr-defined]
            )
            await session.commit()

    for out, existed in ((tmp_path / "new", False), (tmp_path / "given", True)):
        if existed:
            out.mkdir()
        gates.clear()
        async with sessions() as session:
            connection = await session.connection()
            await connection.execute(
                update(Patient).where(Patient.id.in_(leaving)).values(research_consent=True)  # type: ignore[attr-defined]
            )
            await session.commit()
        with pytest.raises(ExportRefused, match="fewer than k"):
            await write_bundle(
                sessions,
                runtime.keyring,
                ExportSpec(name="withdrawal", clinic_ids=(clinic_id,)),
                key=b"k" * 32,
                out=out,
                out_existed=existed,
                progress=withdraw_during_the_first_run,
            )
        assert -1 in gates  # the first run met the withdrawal, a second one ran
        assert out.exists() == existed
        assert not existed or not any(out.iterdir())
