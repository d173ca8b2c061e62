"""Course routes through the running app (both databases): list, end, access and problems."""

from datetime import timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

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


def session_body(clock: MovableClock, days: float) -> dict[str, object]:
    return {
        "modality": "n2o",
        "planned_start": (clock.now() + timedelta(days=days)).isoformat(),
        "minutes": 60,
        "n2o_concentration_percent": 50,
    }


async def test_a_clinician_ends_a_course(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"].headers
    base = f"/api/v1/patients/{people.patients['patient_a'].id}"
    first = await api.post(f"{base}/sessions", headers=clinician, json=session_body(clock, -1))
    assert first.status_code == 201, first.text
    second = await api.post(f"{base}/sessions", headers=clinician, json=session_body(clock, 9))
    course_id = first.json()["course_id"]

    listed = await api.get(f"{base}/courses", headers=clinician)
    assert listed.status_code == 200, listed.text
    (course,) = listed.json()["courses"]
    assert (course["id"], course["status"], course["protocol_id"]) == (
        course_id,
        "active",
        "n2o-default",
    )

    patient = await api.post(
        f"{base}/courses/{course_id}/end", headers=people.patients["patient_a"].headers
    )
    assert patient.status_code in (401, 403)  # a patient token is not for staff routes
    other_clinic = await api.post(
        f"{base}/courses/{course_id}/end", headers=people.staff["clinician_b"].headers
    )
    assert other_clinic.status_code in (403, 404)
    other_patient = await api.post(
        f"/api/v1/patients/{people.patients['patient_a2'].id}/courses/{course_id}/end",
        headers=clinician,
    )
    assert other_patient.status_code == 404
    assert other_patient.headers["content-type"].startswith("application/problem+json")

    ended = await api.post(f"{base}/courses/{course_id}/end", headers=clinician)
    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert body["course"]["status"] == "ended"
    assert body["last_session_id"] == first.json()["id"]
    assert body["cancelled_session_ids"] == [second.json()["id"]]
    sessions = {
        s["id"]: s["status"]
        for s in (await api.get(f"{base}/sessions", headers=clinician)).json()["sessions"]
    }
    assert sessions[second.json()["id"]] == "cancelled"

    into_ended = await api.post(
        f"{base}/sessions",
        headers=clinician,
        json={**session_body(clock, 3), "course_id": course_id},
    )
    assert into_ended.status_code == 409
    assert into_ended.headers["content-type"].startswith("application/problem+json")
