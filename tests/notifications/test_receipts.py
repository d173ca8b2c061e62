"""Receipts through the running app (both databases): the app reports "received" and "opened"
for its own notifications, idempotently; anyone else's or an unknown one is a problem; the
clinician's check-in ladder shows when the check-in's notification was opened."""

from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.outbox import repository
from backend.domain.outbox.enqueue import OutboxRequest, RecipientType, enqueue
from backend.lib.ids import uuid7
from notifications.base import Channel
from notifications.templates import MessageKind
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


async def _push_to(
    api: AsyncTestClient[Litestar],  # noqa: F811
    device_id: UUID,
    *,
    check_in_id: str | None = None,
    recipient_type: str = RecipientType.DEVICE,
) -> UUID:
    """An outbox message to a device, as the check-in timers write it; its id is the push
    payload's ``message_id``."""
    runtime = runtime_of(api)
    key = f"test:{uuid4()}"
    async with runtime.require_sessionmaker()() as session:
        await enqueue(
            session,
            OutboxRequest(
                idempotency_key=key,
                channel=Channel.APNS,
                kind=MessageKind.CHECK_IN_DUE,
                recipient_type=recipient_type,
                recipient_id=str(device_id),
                check_in_id=check_in_id,
            ),
            now=runtime.clock.now(),
        )
        await session.commit()
        connection = await session.connection()
        found = await connection.scalar(
            repository.TABLE.select()
            .with_only_columns(repository.TABLE.c.id)
            .where(repository.TABLE.c.idempotency_key == key)
        )
    assert isinstance(found, UUID)
    return found


async def test_the_app_reports_received_then_opened_and_repeats_change_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    patient = people.patients["patient_a"]
    assert patient.device_id is not None
    message_id = await _push_to(api, patient.device_id)
    url = f"/api/v1/notifications/{message_id}/receipts"

    received = await api.post(url, headers=patient.headers, json={"event": "received"})
    assert received.status_code == 200, received.text
    assert received.json()["received_at"] is not None
    assert received.json()["opened_at"] is None
    first_received = received.json()["received_at"]

    clock.advance(minutes=3)
    again = await api.post(url, headers=patient.headers, json={"event": "received"})
    assert again.status_code == 200
    assert again.json()["received_at"] == first_received  # the first report's time is kept

    opened = await api.post(url, headers=patient.headers, json={"event": "opened"})
    assert opened.status_code == 200
    assert opened.json()["received_at"] == first_received
    assert opened.json()["opened_at"] > first_received


async def test_opened_alone_also_records_received(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    patient = people.patients["patient_a"]
    assert patient.device_id is not None
    message_id = await _push_to(api, patient.device_id)
    opened = await api.post(
        f"/api/v1/notifications/{message_id}/receipts",
        headers=patient.headers,
        json={"event": "opened"},
    )
    assert opened.status_code == 200
    assert opened.json()["received_at"] == opened.json()["opened_at"]


async def test_another_patients_or_an_unknown_notification_is_a_problem_and_stores_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    owner = people.patients["patient_a"]
    assert owner.device_id is not None
    message_id = await _push_to(api, owner.device_id)
    url = f"/api/v1/notifications/{message_id}/receipts"

    other = await api.post(
        url, headers=people.patients["patient_a2"].headers, json={"event": "opened"}
    )
    assert other.status_code == 403, other.text
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["type"].endswith("not-your-notification")

    unknown = await api.post(
        f"/api/v1/notifications/{uuid7()}/receipts",
        headers=owner.headers,
        json={"event": "opened"},
    )
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")

    bad = await api.post(url, headers=owner.headers, json={"event": "read"})
    assert bad.status_code == 400
    staff = await api.post(
        url, headers=people.staff["clinician_a"].headers, json={"event": "opened"}
    )
    assert staff.status_code in (401, 403)  # a staff token is not a patient app token
    anonymous = await api.post(url, json={"event": "opened"})
    assert anonymous.status_code == 401

    # Nothing was stored by the refused reports: the owner's first report is the first.
    mine = await api.post(url, headers=owner.headers, json={"event": "received"})
    assert mine.json()["opened_at"] is None


async def test_a_staff_message_cannot_be_receipted_by_a_patient(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    patient = people.patients["patient_a"]
    message_id = await _push_to(
        api, people.staff["clinician_a"].id, recipient_type=RecipientType.STAFF
    )
    refused = await api.post(
        f"/api/v1/notifications/{message_id}/receipts",
        headers=patient.headers,
        json={"event": "received"},
    )
    assert refused.status_code == 403


async def test_the_clinicians_ladder_shows_when_the_check_in_was_opened(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"]
    patient = people.patients["patient_a"]
    assert patient.device_id is not None
    base = f"/api/v1/patients/{patient.id}"
    start = clock.now() + timedelta(days=2)
    created = await api.post(
        f"{base}/sessions",
        headers=clinician.headers,
        json={
            "modality": "n2o",
            "planned_start": start.isoformat(),
            "minutes": 60,
            "n2o_concentration_percent": 50,
        },
    )
    assert created.status_code == 201, created.text
    ladder = (await api.get(f"{base}/check-ins", headers=clinician.headers)).json()
    check_in = ladder["check_ins"][0]
    assert check_in["opened_at"] is None
    assert check_in["received_at"] is None

    message_id = await _push_to(api, patient.device_id, check_in_id=check_in["id"])
    await api.post(
        f"/api/v1/notifications/{message_id}/receipts",
        headers=patient.headers,
        json={"event": "opened"},
    )
    ladder = (await api.get(f"{base}/check-ins", headers=clinician.headers)).json()
    (step,) = [c for c in ladder["check_ins"] if c["id"] == check_in["id"]]
    assert step["opened_at"] is not None
    assert step["received_at"] == step["opened_at"]
    others = [c for c in ladder["check_ins"] if c["id"] != check_in["id"]]
    assert all(c["opened_at"] is None for c in others)
