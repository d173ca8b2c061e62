"""The session and check-in routes through the running app (both databases): access rules,
problem details, the patient's due check-ins, the clinician's ladder, audit."""

from datetime import timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlmodel import col

from backend.db.models.audit_event import AuditLogEntry
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


def _session_body(clock: MovableClock, days: float = 0.5) -> dict[str, object]:
    start = clock.now() + timedelta(days=days)
    return {
        "modality": "n2o",
        "planned_start": start.isoformat(),
        "minutes": 60,
        "n2o_concentration_percent": 50,
        "notes": "first session",
    }


async def test_a_clinician_plans_a_session_and_the_patient_sees_the_check_ins(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"]
    patient = people.patients["patient_a"]
    base = f"/api/v1/patients/{patient.id}"
    created = await api.post(
        f"{base}/sessions", headers=clinician.headers, json=_session_body(clock)
    )
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["status"] == "planned"
    assert session["notes"] == "first session"

    ladder = await api.get(f"{base}/check-ins", headers=clinician.headers)
    assert ladder.status_code == 200, ladder.text
    steps = {c["step"] for c in ladder.json()["check_ins"]}
    assert {"baseline", "2h", "24h"} <= steps

    due = await api.get("/api/v1/check-ins", headers=patient.headers)
    assert due.status_code == 200, due.text
    body = due.json()
    # Baseline and pre-session (merged: their windows overlap) are open now, 12 h before.
    assert [c["label"] for c in body["now"]] == ["Before first session (<= 7 d)"]
    assert body["now"][0]["opens_at"] <= body["now"][0]["due_at"] < body["now"][0]["closes_at"]
    assert {q["instrument_id"] for q in body["now"][0]["questionnaires"]} >= {"phq9", "gad7"}
    assert body["next"]

    moved = await api.put(
        f"{base}/sessions/{session['id']}/schedule",
        headers=clinician.headers,
        json={"planned_start": (clock.now() + timedelta(days=3)).isoformat()},
    )
    assert moved.status_code == 200, moved.text
    cancelled = await api.post(f"{base}/sessions/{session['id']}/cancel", headers=clinician.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    ladder = await api.get(f"{base}/check-ins", headers=clinician.headers)
    # The open check-in may already have gone out (the app's timers run): it stays sent.
    statuses = [c["status"] for c in ladder.json()["check_ins"]]
    assert set(statuses) <= {"cancelled", "sent"}
    assert statuses.count("sent") <= 1

    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as s:
        audited = await s.scalar(
            select(func.count())
            .select_from(AuditLogEntry)
            .where(col(AuditLogEntry.resource_type).in_(("session", "check_ins")))
        )
    assert audited is not None
    assert audited >= 5


async def test_other_clinics_and_other_patients_are_refused(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    patient = people.patients["patient_a"]
    base = f"/api/v1/patients/{patient.id}"
    other_clinic = await api.post(
        f"{base}/sessions", headers=people.staff["clinician_b"].headers, json=_session_body(clock)
    )
    assert other_clinic.status_code in (403, 404)
    researcher = await api.get(f"{base}/sessions", headers=people.staff["researcher_a"].headers)
    assert researcher.status_code == 403
    other_patient = await api.put(
        f"{base}/schedule",
        headers=people.patients["patient_a2"].headers,
        json={"time_zone": "Europe/Paris"},
    )
    assert other_patient.status_code == 403
    bad_dose = await api.post(
        f"{base}/sessions",
        headers=people.staff["clinician_a"].headers,
        json={**_session_body(clock), "esketamine_mg": 56},
    )
    assert bad_dose.status_code == 422
    assert bad_dose.headers["content-type"].startswith("application/problem+json")


async def test_a_patient_changes_their_quiet_hours_and_unsent_check_ins_move(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    patient = people.patients["patient_a"]
    base = f"/api/v1/patients/{patient.id}"
    created = await api.post(
        f"{base}/sessions", headers=people.staff["clinician_a"].headers, json=_session_body(clock)
    )
    assert created.status_code == 201
    changed = await api.put(
        f"{base}/schedule",
        headers=patient.headers,
        json={
            "time_zone": "America/New_York",
            "quiet_hours_start": "22:00",
            "quiet_hours_end": "07:00",
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["time_zone"] == "America/New_York"
    assert changed.json()["check_ins_moved"] > 0
    again = await api.put(
        f"{base}/schedule",
        headers=patient.headers,
        json={
            "time_zone": "America/New_York",
            "quiet_hours_start": "22:00",
            "quiet_hours_end": "07:00",
        },
    )
    assert again.json()["check_ins_moved"] == 0
