"""Through the running app (both databases): the companion app reporting a new time zone re-plans
the patient's unsent check-ins, and erasing a patient cancels their unsent check-ins at once."""

from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from backend.db.models.audit_event import AuditLogEntry
from backend.db.models.patient import Patient
from backend.db.models.treatment import CheckIn
from backend.domain.check_ins import repository
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    PatientAccount,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock

CHECK_INS = CheckIn.__table__  # type: ignore[attr-defined]
LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")
UNSENT = {"pending", "merged"}


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


def _london_morning(clock: MovableClock) -> datetime:
    """08:00 in London two or three days ahead: its ladder (session end + 2 h, days 3, 7...)
    falls in London's day but in New York's night (21:00-08:00), so a move must move it."""
    day = (clock.now() + timedelta(days=2)).astimezone(LONDON).date()
    return datetime.combine(day, time(8, 0), tzinfo=LONDON).astimezone(UTC)


async def _plan_session(
    client: AsyncTestClient[Litestar], people: World, patient: PatientAccount, start: datetime
) -> None:
    created = await client.post(
        f"/api/v1/patients/{patient.id}/sessions",
        headers=people.staff["clinician_a"].headers,
        json={
            "modality": "n2o",
            "planned_start": start.isoformat(),
            "minutes": 60,
            "n2o_concentration_percent": 50,
        },
    )
    assert created.status_code == 201, created.text


async def _rows(client: AsyncTestClient[Litestar], patient_id: UUID) -> dict[str, Any]:
    async with runtime_of(client).require_engine().connect() as connection:
        rows = await repository.rows_for_patient(connection, patient_id)
    return {r.idempotency_key: r for r in rows}


async def _set_status(client: AsyncTestClient[Litestar], key: str, status: str) -> None:
    """The patient answered (or was sent) this one: stands in for the app and the timers."""
    async with runtime_of(client).require_engine().begin() as connection:
        await connection.execute(
            update(CHECK_INS).where(CHECK_INS.c.idempotency_key == key).values(status=status)
        )


def _in_quiet_hours(at: datetime, zone: ZoneInfo) -> bool:
    local = at.astimezone(zone).time()
    return local >= time(21, 0) or local < time(8, 0)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _audits(client: AsyncTestClient[Litestar], action: str, patient_id: UUID) -> int:
    async with runtime_of(client).require_sessionmaker()() as s:
        count = await s.scalar(
            select(func.count())
            .select_from(AuditLogEntry)
            .where(
                AuditLogEntry.action == action,  # type: ignore[arg-type]
                AuditLogEntry.resource_id == str(patient_id),  # type: ignore[arg-type]
            )
        )
    return int(count or 0)


async def test_travelling_to_new_york_replans_unsent_check_ins_in_the_new_local_time(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    patient = people.patients["patient_a"]
    await _plan_session(api, people, patient, _london_morning(clock))
    before = await _rows(api, patient.id)
    later = sorted(
        (r for r in before.values() if r.status in UNSENT), key=lambda r: _aware(r.due_at)
    )
    answered, sent = later[-1].idempotency_key, later[-2].idempotency_key
    await _set_status(api, answered, "answered")
    await _set_status(api, sent, "sent")
    before = await _rows(api, patient.id)
    for row in before.values():
        if row.status in UNSENT and not row.during_quiet_hours:
            assert not _in_quiet_hours(_aware(row.due_at), LONDON)

    # Unknown zone: a 4xx problem, and neither the device, the patient nor a check-in changed.
    bad = await api.put(
        "/api/v1/me/device", headers=patient.headers, json={"time_zone": "Mars/Olympus_Mons"}
    )
    assert 400 <= bad.status_code < 500, bad.text
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert await _rows(api, patient.id) == before

    moved = await api.put(
        "/api/v1/me/device", headers=patient.headers, json={"time_zone": "America/New_York"}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["time_zone"] == "America/New_York"
    after = await _rows(api, patient.id)
    async with runtime_of(api).require_sessionmaker()() as s:
        row = await s.get(Patient, patient.id)
        assert row is not None
        assert row.time_zone == "America/New_York"

    assert after[answered] == before[answered]
    assert after[sent] == before[sent]
    changed = 0
    for key, row in after.items():
        if before[key].status not in UNSENT:
            # The timers may have sent the open baseline meanwhile; nothing sent is re-planned.
            assert _aware(row.due_at) == _aware(before[key].due_at), key
            continue
        if row.status in UNSENT and not row.during_quiet_hours:
            assert not _in_quiet_hours(_aware(row.due_at), NEW_YORK), key
        changed += _aware(row.due_at) != _aware(before[key].due_at)
    assert changed > 0
    assert await _audits(api, "patient.schedule", patient.id) == 1

    # Reporting the same zone again re-plans nothing and audits no schedule change.
    again = await api.put(
        "/api/v1/me/device", headers=patient.headers, json={"time_zone": "America/New_York"}
    )
    assert again.status_code == 200, again.text
    assert await _audits(api, "patient.schedule", patient.id) == 1
    unchanged = await _rows(api, patient.id)
    assert {k: _aware(r.due_at) for k, r in unchanged.items() if r.status in UNSENT} == {
        k: _aware(r.due_at) for k, r in after.items() if r.status in UNSENT and k in unchanged
    }


async def test_erasing_a_patient_cancels_their_unsent_check_ins_at_once(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    patient, other = people.patients["patient_a"], people.patients["patient_a2"]
    start = _london_morning(clock)
    await _plan_session(api, people, patient, start)
    await _plan_session(api, people, other, start)
    rows = await _rows(api, patient.id)
    answered = max(
        (r for r in rows.values() if r.status in UNSENT), key=lambda r: _aware(r.due_at)
    ).idempotency_key
    await _set_status(api, answered, "answered")
    unsent = {k for k, r in (await _rows(api, patient.id)).items() if r.status in UNSENT}
    assert len(unsent) > 3

    erased = await api.delete(
        f"/api/v1/patients/{patient.id}", headers=people.staff["admin_a"].headers
    )
    assert erased.status_code in (200, 204), erased.text

    after = await _rows(api, patient.id)
    assert {k for k, r in after.items() if r.status in UNSENT} == set()
    assert all(after[k].status == "cancelled" and after[k].cancelled_at for k in unsent)
    assert all(after[k].next_reminder_at is None for k in unsent)
    assert after[answered].status == "answered"
    # Another patient of the clinic keeps theirs.
    kept = await _rows(api, other.id)
    assert any(r.status in UNSENT for r in kept.values())
    assert all(r.status != "cancelled" for r in kept.values())
