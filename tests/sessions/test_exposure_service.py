"""N2O exposure from recorded sessions (both databases)."""

from datetime import timedelta

from backend.domain.sessions import service
from backend.domain.sessions.exposure import patient_n2o_exposure
from tests.sessions.world import START, World


async def test_exposure_counts_live_n2o_sessions(world: World) -> None:
    patient = await world.patient()
    await world.record(patient, START)
    await world.record(patient, START + timedelta(days=3))
    cancelled = await world.record(patient, START + timedelta(days=5))
    async with world.sessions() as s, s.begin():
        await service.cancel_session(s, patient_id=patient, session_id=cancelled, now=world.now)
    async with world.sessions() as s:
        exposure = await patient_n2o_exposure(s, patient, as_of=START + timedelta(days=10))
    assert exposure.cumulative_inhalation == timedelta(hours=2)
    assert exposure.shortest_interval == timedelta(days=3)
    # Three days apart is under the 4-day minimum interval (Entonox SmPC, §5.1).
    assert [t.kind for t in exposure.triggers] == ["short_interval"]
