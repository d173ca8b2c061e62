"""An N2O hold stops the next N2O session until a clinician clears it or overrides it (audited)."""

import uuid
from datetime import timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.alerts.stored import audit_actions, neuro, submit
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    World,
    api,
    build_world,
    identity_app,
    log_in,
)
from tests.identity.conftest import clock as clock


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


async def test_a_held_n2o_session_is_refused_unless_a_clinician_overrides_it(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"]
    patient = people.patients["patient_a"]
    base = f"/api/v1/patients/{patient.id}"
    start = clock.now() + timedelta(hours=2)
    planned = await api.post(
        f"{base}/sessions",
        headers=clinician.headers,
        json={
            "modality": "n2o",
            "planned_start": start.isoformat(),
            "minutes": 60,
            "n2o_concentration_percent": 50,
        },
    )
    assert planned.status_code == 201, planned.text
    session_id = planned.json()["id"]

    # New numbness and unsteadiness after earlier sessions: the alert engine sets a hold.
    await submit(api, clock, patient, "n2o-neuro", neuro("NEURO-3"))
    assert (await api.get(f"{base}/n2o-hold", headers=clinician.headers)).json()["hold"]

    clock.advance(hours=4)
    await log_in(api, clinician, clock)  # access tokens last 15 minutes
    held = {
        "started_at": start.isoformat(),
        "ended_at": (start + timedelta(hours=1)).isoformat(),
    }
    url = f"{base}/sessions/{session_id}/complete"
    refused = await api.post(url, headers=clinician.headers, json=held)
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"] == "urn:interlude:problem:n2o-session-on-hold"
    sessions = (await api.get(f"{base}/sessions", headers=clinician.headers)).json()
    assert next(s for s in _items(sessions) if s["id"] == session_id)["status"] == "planned"

    overridden = await api.post(
        url, headers=clinician.headers, json={**held, "override_n2o_hold": True}
    )
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["status"] == "completed"
    assert "n2o_hold.override" in await audit_actions(api, uuid.UUID(session_id))


def _items(body: object) -> list[dict[str, object]]:
    if isinstance(body, list):
        return body
    assert isinstance(body, dict)
    return list(body.get("sessions") or body.get("items") or [])
