"""The k-anonymity gate clears a cohort in the first pass; the second pass must export that same
cohort. A patient who leaves it in between (consent withdrawn, erased) would shrink a class the
gate cleared below k, so the export starts again instead of writing it."""

import uuid
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from backend.db.models.patient import Patient
from backend.domain.exports.cli import write_bundle
from backend.domain.exports.deid import CohortChanged
from backend.domain.exports.jobs import ExportSpec, Sessions, produce_bundle
from backend.domain.exports.kanon import ExportRefused
from tests.exports.world import build_world
from tests.identity.conftest import MovableClock, runtime_of


async def _set_consent(sessions: Sessions, patient_ids: list[uuid.UUID], consent: bool) -> None:
    async with sessions() as session:
        connection = await session.connection()
        await connection.execute(
            update(Patient).where(Patient.id.in_(patient_ids)).values(research_consent=consent)  # type: ignore[attr-defined]
        )
        await session.commit()


class _WithdrawOnce:
    """An export's progress hook: once the gate has read the cohort (the first report at 0 rows
    and 10 % or more), these patients withdraw their research consent."""

    def __init__(self, sessions: Sessions, leaving: list[uuid.UUID]) -> None:
        self.sessions, self.leaving = sessions, leaving
        self.withdrawn = False

    async def __call__(self, rows: int, percent: int) -> None:
        if self.withdrawn or rows or percent < 10:
            return
        self.withdrawn = True
        await _set_consent(self.sessions, self.leaving, False)


async def test_consent_withdrawn_after_the_gate_makes_the_export_start_again(
    api: AsyncTestClient[Litestar], clock: MovableClock, tmp_path: Path
) -> None:
    world = await build_world(api, clock)
    runtime = runtime_of(api)
    sessions = runtime.require_sessionmaker()
    clinic_id = world.staff["researcher_a"].clinic_id
    assert clinic_id is not None
    # The six consenting patients are one class: with two of them gone, four would be left.
    withdraw = _WithdrawOnce(sessions, [patient.id for patient in world.consenting[:2]])
    with pytest.raises(CohortChanged):
        await produce_bundle(
            sessions,
            runtime.keyring,
            ExportSpec(name="withdrawal", clinic_ids=(clinic_id,)),
            key=b"k" * 32,
            directory=tmp_path / "bundle",
            progress=withdraw,
        )
    assert withdraw.withdrawn


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
    for out, existed in ((tmp_path / "new", False), (tmp_path / "given", True)):
        if existed:
            out.mkdir()
        await _set_consent(sessions, leaving, True)
        withdraw = _WithdrawOnce(sessions, leaving)
        with pytest.raises(ExportRefused, match="fewer than k"):
            await write_bundle(
                sessions,
                runtime.keyring,
                ExportSpec(name="withdrawal", clinic_ids=(clinic_id,)),
                key=b"k" * 32,
                out=out,
                out_existed=existed,
                progress=withdraw,
            )
        assert withdraw.withdrawn  # in the first run; only a second one can be refused
        assert out.exists() == existed
        assert not existed or not any(out.iterdir())
