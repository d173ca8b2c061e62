"""Follow-up tasks (the last rung of channel fallback) through the running app, both databases:
the clinic's staff list and complete their own clinic's tasks, nobody else's."""

from uuid import uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.fallback import repository
from backend.domain.fallback.timer import TASK_PATIENT_UNREACHED
from backend.lib.ids import uuid7
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


async def test_staff_see_and_complete_their_clinics_follow_up_tasks(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    patient = people.patients["patient_a"]
    runtime = runtime_of(api)
    check_in_id = uuid4()
    async with runtime.require_engine().begin() as connection:
        task_id = await repository.add_task(
            connection,
            task_id=uuid7(),
            clinic_id=people.clinic_a,
            patient_id=patient.id,
            check_in_id=check_in_id,
            kind=TASK_PATIENT_UNREACHED,
            now=runtime.clock.now(),
        )
        again = await repository.add_task(  # the same step again: still one task
            connection,
            task_id=uuid7(),
            clinic_id=people.clinic_a,
            patient_id=patient.id,
            check_in_id=check_in_id,
            kind=TASK_PATIENT_UNREACHED,
            now=runtime.clock.now(),
        )
    assert again == task_id
    clinician = people.staff["clinician_a"]
    listed = await api.get("/api/v1/clinic/tasks", headers=clinician.headers)
    assert listed.status_code == 200, listed.text
    (task,) = listed.json()["tasks"]
    assert task["id"] == str(task_id)
    assert task["patient_id"] == str(patient.id)
    assert task["kind"] == "patient_unreached"

    other_clinic = people.staff["clinician_b"]
    assert (await api.get("/api/v1/clinic/tasks", headers=other_clinic.headers)).json() == {
        "tasks": []
    }
    url = f"/api/v1/clinic/tasks/{task_id}/complete"
    refused = await api.post(url, headers=other_clinic.headers)
    assert refused.status_code == 404
    assert refused.headers["content-type"].startswith("application/problem+json")
    patient_call = await api.get("/api/v1/clinic/tasks", headers=patient.headers)
    assert patient_call.status_code in (401, 403)

    done = await api.post(url, headers=clinician.headers)
    assert done.status_code == 200, done.text
    assert done.json()["completed_by"] == str(clinician.id)
    twice = await api.post(url, headers=people.staff["admin_a"].headers)
    assert twice.json()["completed_by"] == str(clinician.id)  # the first completion is kept
    assert (await api.get("/api/v1/clinic/tasks", headers=clinician.headers)).json()["tasks"] == []
    history = await api.get(
        "/api/v1/clinic/tasks", headers=clinician.headers, params={"include_done": "true"}
    )
    assert [t["id"] for t in history.json()["tasks"]] == [str(task_id)]
