"""The preferences API through the running app (both databases): a patient and their clinician
choose channels and quiet hours; a clinician chooses their channel and goes off call; a clinic
admin sets a colleague's; bad input and other people's settings are problems that change
nothing."""

from typing import Any

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


async def test_patient_and_clinician_choose_channels_and_quiet_hours(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    patient = people.patients["patient_a"]
    url = f"/api/v1/patients/{patient.id}/notification-preferences"

    initial = await api.get(url, headers=patient.headers)
    assert initial.status_code == 200, initial.text
    assert initial.json()["channels"] == ["push"]  # SMS is opt-in
    assert initial.json()["sms_opted_in"] is False
    assert initial.json()["has_phone_number"] is True
    assert (initial.json()["quiet_hours_start"], initial.json()["quiet_hours_end"]) == (
        "21:00",
        "08:00",
    )

    chosen = await api.put(
        url,
        headers=patient.headers,
        json={
            "channels": ["push", "sms"],
            "quiet_hours_start": "22:30",
            "quiet_hours_end": "07:00",
        },
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["sms_opted_in"] is True
    assert chosen.json()["quiet_hours_start"] == "22:30"

    by_clinician = await api.put(
        url, headers=people.staff["clinician_a"].headers, json={"channels": ["sms"]}
    )
    assert by_clinician.status_code == 200, by_clinician.text
    seen = (await api.get(url, headers=people.staff["clinician_a"].headers)).json()
    assert seen["channels"] == ["sms"]
    assert seen["quiet_hours_start"] == "22:30"  # untouched when not given

    bad: dict[str, Any]
    for bad in (
        {"channels": []},
        {"channels": ["push", "push"]},
        {"channels": ["pigeon"]},
        {"channels": ["push"], "quiet_hours_start": "22:00"},
        {"channels": ["push"], "quiet_hours_start": "25:00", "quiet_hours_end": "07:00"},
        {"channels": ["push"], "extra": True},
    ):
        refused = await api.put(url, headers=patient.headers, json=bad)
        # 400: the body's shape; 422: a rule (a channel twice, half of the quiet hours)
        assert refused.status_code in (400, 422), (bad, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    other_patient = await api.put(
        url, headers=people.patients["patient_a2"].headers, json={"channels": ["push"]}
    )
    assert other_patient.status_code == 403
    other_clinic = await api.get(url, headers=people.staff["clinician_b"].headers)
    assert other_clinic.status_code in (403, 404)
    assert (await api.get(url, headers=patient.headers)).json()["channels"] == ["sms"]


async def test_clinicians_choose_their_channel_and_on_call_state(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    clinician = people.staff["clinician_a"]
    mine = "/api/v1/staff/me/notification-preferences"
    initial = await api.get(mine, headers=clinician.headers)
    assert initial.status_code == 200, initial.text
    assert initial.json() == {
        "staff_id": str(clinician.id),
        "channel": "email",
        "webhook_endpoint": None,
        "on_call": True,
    }
    off = await api.put(mine, headers=clinician.headers, json={"on_call": False})
    assert off.status_code == 200, off.text
    assert off.json()["on_call"] is False

    unknown_endpoint = await api.put(
        mine, headers=clinician.headers, json={"channel": "webhook", "webhook_endpoint": "nope"}
    )
    assert unknown_endpoint.status_code == 422
    assert unknown_endpoint.json()["errors"][0]["pointer"] == "/webhook_endpoint"
    assert (await api.get(mine, headers=clinician.headers)).json()["on_call"] is False

    patient = await api.get(mine, headers=people.patients["patient_a"].headers)
    assert patient.status_code in (401, 403)

    admin = people.staff["admin_a"]
    colleague = f"/api/v1/clinic/staff/{clinician.id}/notification-preferences"
    back_on = await api.put(colleague, headers=admin.headers, json={"on_call": True})
    assert back_on.status_code == 200, back_on.text
    assert (await api.get(mine, headers=clinician.headers)).json()["on_call"] is True
    elsewhere = f"/api/v1/clinic/staff/{people.staff['clinician_b'].id}/notification-preferences"
    assert (await api.put(elsewhere, headers=admin.headers, json={})).status_code == 404
    not_admin = await api.put(colleague, headers=clinician.headers, json={})
    assert not_admin.status_code == 403
