"""A clinic's check-in protocol overrides through the running app (both databases): who may read
and change them, validation as problems with nothing stored, versions, audit, and which courses
follow which protocol."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.db.models.audit_event import AuditLogEntry
from backend.db.models.treatment import CheckIn, ClinicProtocolVersion, TreatmentCourse
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock

URL = "/api/v1/clinic/check-in-protocols"


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


def _override(version: str = "1.0.0", label: str = "+48 h") -> dict[str, Any]:
    return {
        "id": "clinic-a-n2o",
        "version": version,
        "extends": {"id": "n2o-default", "version": "1.0.0"},
        "source": "Clinic A adds a 48 h check",
        "steps": {
            "afterSession": [
                {
                    "id": "48h",
                    "label": label,
                    "offset": "PT48H",
                    "opens": "PT40H",
                    "closes": "PT56H",
                    "instruments": ["madrs-s"],
                }
            ]
        },
    }


def _session_body(clock: MovableClock, days: float = 2) -> dict[str, object]:
    return {
        "modality": "n2o",
        "planned_start": (clock.now() + timedelta(days=days)).isoformat(),
        "minutes": 60,
        "n2o_concentration_percent": 50,
    }


async def _course(api: AsyncTestClient[Litestar], course_id: str) -> TreatmentCourse:  # noqa: F811
    async with runtime_of(api).require_sessionmaker()() as s:
        course = await s.get(TreatmentCourse, uuid.UUID(course_id))
        assert course is not None
        return course


async def _steps(api: AsyncTestClient[Litestar], session_id: str) -> set[str]:  # noqa: F811
    async with runtime_of(api).require_sessionmaker()() as s:
        rows = await s.exec(
            select(CheckIn.step).where(  # type: ignore[call-overload]
                CheckIn.session_id == uuid.UUID(session_id),
                CheckIn.status != "cancelled",
            )
        )
        return {str(r[0]) for r in rows.all()}


async def test_clinicians_read_the_shipped_defaults_until_an_admin_saves_an_override(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    listed = await api.get(URL, headers=people.staff["clinician_a"].headers)
    assert listed.status_code == 200, listed.text
    protocols = listed.json()["protocols"]
    assert [p["modality"] for p in protocols] == ["n2o", "iv_ketamine", "esketamine"]
    assert all(p["source"] == "default" and p["override"] is None for p in protocols)
    n2o = protocols[0]
    assert n2o["effective"] == n2o["shipped_default"] == {"id": "n2o-default", "version": "1.0.0"}
    assert n2o["protocol"]["afterSession"][1]["offset"] == "PT7200S"  # ISO 8601, in seconds

    refused = await api.put(f"{URL}/n2o", headers=people.staff["clinician_a"].headers, json={})
    assert refused.status_code == 403
    researcher = await api.get(URL, headers=people.staff["researcher_a"].headers)
    assert researcher.status_code == 403
    unknown = await api.get(f"{URL}/lsd", headers=people.staff["clinician_a"].headers)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")

    admin = people.staff["admin_a"].headers
    saved = await api.put(f"{URL}/n2o", headers=admin, json=_override())
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["source"] == "override"
    assert body["effective"] == {"id": "clinic-a-n2o", "version": "1.0.0"}
    assert body["shipped_default"] == {"id": "n2o-default", "version": "1.0.0"}
    assert body["override"] == _override()
    assert body["override_saved_by"] == str(people.staff["admin_a"].id)
    assert "48h" in {s["id"] for s in body["protocol"]["afterSession"]}

    # Another clinic still follows the shipped default.
    other = await api.get(f"{URL}/n2o", headers=people.staff["clinician_b"].headers)
    assert other.json()["source"] == "default"

    async with runtime_of(api).require_sessionmaker()() as s:
        audited = await s.scalar(
            select(func.count())
            .select_from(AuditLogEntry)
            .where(AuditLogEntry.action == "check_in_protocol.update")  # type: ignore[arg-type]
        )
    assert audited == 1


BAD_OVERRIDES: list[tuple[dict[str, Any], str]] = [
    ({"extends": {"id": "n2o-default", "version": "0.9.0"}}, "extends"),
    ({"id": "n2o-default"}, "own id"),
    ({"version": "one"}, "MAJOR.MINOR.PATCH"),
    ({"remove": ["no-such-step"]}, "unknown steps"),
    ({"colour": "blue"}, "unknown field"),
    (
        {
            "steps": {
                "afterSession": [
                    {
                        "id": "48h",
                        "label": "+48 h",
                        "offset": "PT48H",
                        "opens": "PT50H",
                        "closes": "PT56H",
                        "instruments": ["madrs-s"],
                    }
                ]
            }
        },
        "inside the window",
    ),
    (
        {
            "steps": {
                "afterSession": [
                    {
                        "id": "48h",
                        "label": "+48 h",
                        "offset": "PT48H",
                        "opens": "PT40H",
                        "closes": "PT56H",
                        "instruments": ["madrs"],
                    }
                ]
            }
        },
        "clinician-rated",
    ),
]


async def test_a_bad_override_is_a_problem_and_nothing_changes(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
) -> None:
    admin = people.staff["admin_a"].headers
    for change, problem in BAD_OVERRIDES:
        refused = await api.put(f"{URL}/n2o", headers=admin, json={**_override(), **change})
        assert refused.status_code in (400, 422), refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert problem in refused.text, refused.text
    after = await api.get(f"{URL}/n2o", headers=admin)
    assert after.json()["source"] == "default"
    async with runtime_of(api).require_sessionmaker()() as s:
        stored = await s.scalar(select(func.count()).select_from(ClinicProtocolVersion))
    assert stored == 0


async def test_new_courses_follow_the_override_and_courses_under_way_keep_theirs(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    admin = people.staff["admin_a"].headers
    clinician = people.staff["clinician_a"].headers
    first_patient = f"/api/v1/patients/{people.patients['patient_a'].id}"
    second_patient = f"/api/v1/patients/{people.patients['patient_a2'].id}"

    before = await api.post(
        f"{first_patient}/sessions", headers=clinician, json=_session_body(clock)
    )
    assert before.status_code == 201, before.text
    assert (await _course(api, before.json()["course_id"])).protocol_id == "n2o-default"

    steps_before = await _steps(api, before.json()["id"])
    assert (await api.put(f"{URL}/n2o", headers=admin, json=_override())).status_code == 200
    # The course under way keeps the default: its planned check-ins do not change.
    assert await _steps(api, before.json()["id"]) == steps_before
    assert "48h" not in steps_before
    during = await api.post(
        f"{first_patient}/sessions", headers=clinician, json=_session_body(clock, days=9)
    )
    assert during.status_code == 201
    assert during.json()["course_id"] == before.json()["course_id"]
    assert "48h" not in await _steps(api, during.json()["id"])

    started = await api.post(
        f"{second_patient}/sessions", headers=clinician, json=_session_body(clock)
    )
    course = await _course(api, started.json()["course_id"])
    assert (course.protocol_id, course.protocol_version) == ("clinic-a-n2o", "1.0.0")
    assert "48h" in await _steps(api, started.json()["id"])

    # A version names one document: other content under 1.0.0 is a conflict.
    reused = await api.put(f"{URL}/n2o", headers=admin, json=_override(label="+2 days"))
    assert reused.status_code == 409, reused.text
    newer = await api.put(f"{URL}/n2o", headers=admin, json=_override("1.1.0", "+2 days"))
    assert newer.status_code == 200, newer.text
    assert newer.json()["effective"]["version"] == "1.1.0"

    # The course started under 1.0.0 still re-plans with 1.0.0 after the clinic moved on.
    moved = await api.put(
        f"{second_patient}/sessions/{started.json()['id']}/schedule",
        headers=clinician,
        json={"planned_start": (clock.now() + timedelta(days=3)).isoformat()},
    )
    assert moved.status_code == 200, moved.text
    assert "48h" in await _steps(api, started.json()["id"])

    removed = await api.delete(f"{URL}/n2o", headers=admin)
    assert removed.status_code == 200, removed.text
    assert removed.json()["source"] == "default"
    again = await api.put(
        f"{second_patient}/sessions/{started.json()['id']}/schedule",
        headers=clinician,
        json={"planned_start": (clock.now() + timedelta(days=4)).isoformat()},
    )
    assert again.status_code == 200, again.text
    # Saving 1.0.0 again, unchanged, puts it back in force.
    restored = await api.put(f"{URL}/n2o", headers=admin, json=_override())
    assert restored.status_code == 200, restored.text
    assert restored.json()["effective"]["version"] == "1.0.0"
