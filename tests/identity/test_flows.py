"""Sign-in, sessions, enrolment and patients through the HTTP API, on both databases."""

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.identity.conftest import MovableClock, World


async def test_world_builds_and_patient_reads_own_record(
    api: AsyncTestClient[Litestar], world: World, clock: MovableClock
) -> None:
    patient = world.patients["patient_a"]
    me = await api.get("/api/v1/me", headers=patient.headers)
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "Patient MRN-A-001"
    assert me.json()["status"] == "active"
