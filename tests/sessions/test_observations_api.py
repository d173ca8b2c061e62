"""Session observations through the running app (both databases): blood pressure, CADSS-6,
MOAA/S and the acute side effects a clinician saw, stored encrypted; bad input is a problem
document and changes nothing."""

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.treatment import TreatmentSession
from backend.domain.sessions import service as sessions_service
from backend.domain.sessions.schemas import SIDE_EFFECT_CODES, ObservationsInput
from questionnaires.registry import get_instrument
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    StaffAccount,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock
from tests.races import second_refused_as_stale

NOTE = "Quentin Albemarle-Fitz felt sick in the lift"


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


def _at(value: datetime) -> str:
    return value.isoformat()


async def _held_session(
    api: AsyncTestClient[Litestar],  # noqa: F811
    clinician: StaffAccount,
    base: str,
    start: datetime,
) -> dict[str, Any]:
    created = await api.post(
        f"{base}/sessions",
        headers=clinician.headers,
        json={
            "modality": "n2o",
            "planned_start": _at(start),
            "minutes": 60,
            "n2o_concentration_percent": 50,
        },
    )
    assert created.status_code == 201, created.text
    session: dict[str, Any] = created.json()
    return session


def _observations(start: datetime) -> dict[str, Any]:
    return {
        "blood_pressure": [
            {"at": _at(start - timedelta(minutes=15)), "systolic": 128, "diastolic": 82},
            {"at": _at(start + timedelta(minutes=75)), "systolic": 151, "diastolic": 94},
        ],
        "cadss6": 9,
        "cadss6_at": _at(start + timedelta(minutes=40)),
        "sedation_moaas": 4,
        "side_effects": [
            {
                "code": "nausea",
                "severity": 2,
                "onset_at": _at(start + timedelta(minutes=35)),
                "note": NOTE,
            },
            {"code": "dissociation", "severity": 1, "onset_at": _at(start + timedelta(hours=2))},
        ],
    }


async def _stored(api: AsyncTestClient[Litestar], session_id: str) -> bytes:  # noqa: F811
    async with runtime_of(api).require_sessionmaker()() as s:
        row = await s.get(TreatmentSession, uuid.UUID(session_id))
    assert row is not None
    return bytes(row.observations_ct or b"")


async def test_a_clinician_records_side_effects_and_they_are_stored_encrypted(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"]
    base = f"/api/v1/patients/{people.patients['patient_a'].id}"
    start = clock.now() - timedelta(hours=4)
    session = await _held_session(api, clinician, base, start)
    url = f"{base}/sessions/{session['id']}"
    completed = await api.post(
        f"{url}/complete",
        headers=clinician.headers,
        json={
            "started_at": _at(start),
            "ended_at": _at(start + timedelta(minutes=62)),
            "observations": _observations(start),
        },
    )
    assert completed.status_code == 200, completed.text
    observations = completed.json()["observations"]
    assert [(e["code"], e["severity"], e["note"]) for e in observations["side_effects"]] == [
        ("nausea", 2, NOTE),
        ("dissociation", 1, None),
    ]
    assert observations["cadss6"] == 9
    assert [r["systolic"] for r in observations["blood_pressure"]] == [128, 151]

    # A later write replaces the observations as a whole (PUT).
    later: dict[str, Any] = {
        "sedation_moaas": 5,
        "side_effects": [
            {"code": "headache", "severity": 3, "onset_at": _at(start + timedelta(hours=3))}
        ],
    }
    replaced = await api.put(
        f"{url}/observations", headers=clinician.headers, json={"observations": later}
    )
    assert replaced.status_code == 200, replaced.text
    listed = await api.get(f"{base}/sessions", headers=clinician.headers)
    (shown,) = [s for s in listed.json()["sessions"] if s["id"] == session["id"]]
    assert shown["observations"]["side_effects"] == [
        {
            "code": "headache",
            "severity": 3,
            "onset_at": later["side_effects"][0]["onset_at"].replace("+00:00", "Z"),
            "note": None,
        }
    ]
    assert shown["observations"]["blood_pressure"] == []

    # Nothing readable in the database: codes, values and the note are inside the ciphertext.
    put_back = await api.put(
        f"{url}/observations",
        headers=clinician.headers,
        json={"observations": _observations(start)},
    )
    assert put_back.status_code == 200, put_back.text
    stored = await _stored(api, session["id"])
    assert stored
    for plain in (b"nausea", b"dissociation", NOTE.encode(), b"Albemarle", b"side_effects"):
        assert plain not in stored


async def test_if_match_refuses_a_stale_copy_and_changes_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """Two clinicians read the session; the first writes; the second's write of what it read
    is refused (412) instead of silently replacing the first one's entry."""
    nurse, doctor = people.staff["clinician_a"], people.staff["admin_a"]
    base = f"/api/v1/patients/{people.patients['patient_a'].id}"
    start = clock.now() - timedelta(hours=4)
    session = await _held_session(api, nurse, base, start)
    url = f"{base}/sessions/{session['id']}/observations"
    read = session["version"]
    assert read

    first = {"observations": _observations(start)}
    written = await api.put(url, headers={**nurse.headers, "If-Match": f'"{read}"'}, json=first)
    assert written.status_code == 200, written.text
    version = written.json()["version"]
    assert version != read
    assert written.headers["etag"] == f'"{version}"'
    listed = await api.get(f"{base}/sessions", headers=nurse.headers)
    (shown,) = [s for s in listed.json()["sessions"] if s["id"] == session["id"]]
    assert shown["version"] == version  # the same version when read back
    before = await _stored(api, session["id"])

    stale = {"observations": {"sedation_moaas": 5}}
    for header in (f'"{read}"', f'W/"{version}"', f'"{read}", "other"'):
        refused = await api.put(url, headers={**doctor.headers, "If-Match": header}, json=stale)
        assert refused.status_code == 412, (header, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("precondition-failed")
    malformed = await api.put(url, headers={**doctor.headers, "If-Match": "abc"}, json=stale)
    assert malformed.status_code == 422, malformed.text
    assert await _stored(api, session["id"]) == before

    # The current version (among others, or "*") is accepted; so is no If-Match at all.
    conditions: list[str | None] = [f'"other", "{version}"', "*", None]
    for condition in conditions:
        headers = dict(doctor.headers)
        if condition is not None:
            headers["If-Match"] = condition
        accepted = await api.put(url, headers=headers, json=first)
        assert accepted.status_code == 200, (condition, accepted.text)
        version = accepted.json()["version"]


async def test_a_write_racing_another_of_the_same_version_is_refused(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """Two transactions check the same If-Match: the second waits while the first holds the
    session (PostgreSQL: the row lock taken with the read; SQLite: one writer at a time), then
    sees the new version and is refused, so neither write is lost."""
    clinician = people.staff["clinician_a"]
    patient_id = people.patients["patient_a"].id
    start = clock.now() - timedelta(hours=4)
    created = await _held_session(api, clinician, f"/api/v1/patients/{patient_id}", start)
    runtime = runtime_of(api)
    version = frozenset({created["version"]})

    async def write(session: AsyncSession, moaas: int) -> None:
        await sessions_service.record_observations(
            session,
            runtime.keyring,
            patient_id=uuid.UUID(str(patient_id)),
            session_id=uuid.UUID(created["id"]),
            data=msgspec.convert({"observations": {"sedation_moaas": moaas}}, ObservationsInput),
            now=clock.now(),
            if_match=version,
        )

    await second_refused_as_stale(
        runtime, lambda session: write(session, 4), lambda session: write(session, 2)
    )
    listed = await api.get(f"/api/v1/patients/{patient_id}/sessions", headers=clinician.headers)
    (shown,) = [s for s in listed.json()["sessions"] if s["id"] == created["id"]]
    assert shown["observations"]["sedation_moaas"] == 4


BAD_SIDE_EFFECTS: list[tuple[dict[str, Any], int]] = [
    ({"code": "hiccups"}, 400),  # not in the checklist's vocabulary
    ({"severity": 4}, 400),
    ({"severity": -1}, 400),
    ({"severity": "moderate"}, 400),
    ({"note": "x" * 2_001}, 400),
    ({"colour": "green"}, 400),  # unknown field
    ({"onset_at": "before"}, 400),
    ({"onset_at": "2026-11-20T10:00:00"}, 422),  # no offset
    ({"onset_at": -timedelta(minutes=1)}, 422),  # before the session began
    ({"onset_at": timedelta(hours=73, minutes=30)}, 422),  # over 72 h after its end
    ({"onset_at": timedelta(days=8)}, 422),  # in the future
]


async def test_bad_side_effects_are_refused_and_change_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"]
    base = f"/api/v1/patients/{people.patients['patient_a'].id}"
    # Held a week ago, so that 72 h after its end is in the past.
    start = clock.now() - timedelta(days=7)
    session = await _held_session(api, clinician, base, start)
    url = f"{base}/sessions/{session['id']}"
    good = _observations(start)
    done = await api.post(
        f"{url}/complete",
        headers=clinician.headers,
        json={
            "started_at": _at(start),
            "ended_at": _at(start + timedelta(minutes=62)),
            "observations": good,
        },
    )
    assert done.status_code == 200, done.text
    before = await _stored(api, session["id"])

    for change, status in BAD_SIDE_EFFECTS:
        effect: dict[str, Any] = {"code": "vomiting", "severity": 1, "onset_at": _at(start)}
        for key, value in change.items():
            effect[key] = _at(start + value) if isinstance(value, timedelta) else value
        bad = {**good, "side_effects": [*good["side_effects"], effect]}
        refused = await api.put(
            f"{url}/observations", headers=clinician.headers, json={"observations": bad}
        )
        assert refused.status_code == status, (change, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert NOTE not in refused.text
        assert await _stored(api, session["id"]) == before, change


BAD_READINGS: list[tuple[dict[str, Any], str]] = [
    (
        {"blood_pressure": [{"at": -timedelta(hours=13), "systolic": 120, "diastolic": 80}]},
        "/observations/blood_pressure/0/at",
    ),
    (
        {"blood_pressure": [{"at": timedelta(minutes=5), "systolic": 80, "diastolic": 80}]},
        "/observations/blood_pressure/0",
    ),
    ({"cadss6_at": timedelta(minutes=40)}, "/observations/cadss6_at"),
    ({"sedation_moaas": 3, "sedation_moaas_at": -timedelta(hours=1)}, "sedation_moaas_at"),
    (
        {"side_effects": [{"code": "anxiety", "severity": 2, "onset_at": timedelta(hours=-2)}]},
        "/observations/side_effects/0/onset_at",
    ),
]


async def test_bad_readings_are_refused_with_the_field_named(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"]
    base = f"/api/v1/patients/{people.patients['patient_a'].id}"
    start = clock.now() - timedelta(hours=5)
    session = await _held_session(api, clinician, base, start)

    def timed(value: Any) -> Any:
        if isinstance(value, timedelta):
            return _at(start + value)
        if isinstance(value, dict):
            return {k: timed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [timed(v) for v in value]
        return value

    for observations, pointer in BAD_READINGS:
        # Refused when the session is completed with them: it stays planned.
        refused = await api.post(
            f"{base}/sessions/{session['id']}/complete",
            headers=clinician.headers,
            json={
                "started_at": _at(start),
                "ended_at": _at(start + timedelta(minutes=60)),
                "observations": timed(observations),
            },
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert pointer in json.loads(refused.text)["detail"]
        listed = await api.get(f"{base}/sessions", headers=clinician.headers)
        (shown,) = [s for s in listed.json()["sessions"] if s["id"] == session["id"]]
        assert shown["status"] == "planned"
        assert shown["observations"] is None


def test_the_side_effect_vocabulary_is_the_checklists_graded_items() -> None:
    checklist = get_instrument("side-effects")
    graded = {
        item.link_id.removeprefix("se-").replace("-", "_")
        for item in checklist.items
        if item.type == "choice"
    }
    assert set(SIDE_EFFECT_CODES) == graded
    assert len(SIDE_EFFECT_CODES) == 10
