"""A running app with patients who have every kind of encrypted field, and what the API reads back.

Used by the DEK-rotation, erasure and tamper tests. The app's clock starts an hour in the past so
that a ``rotate-deks`` process on the real clock sees every data key as older than its run.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from backend.crypto import parse_field
from backend.domain.sessions import service as sessions
from backend.domain.sessions.schemas import (
    BloodPressureReading,
    Observations,
    ObservationsInput,
    SessionInput,
)
from backend.keyring.encrypted_columns import ENCRYPTED_TABLES
from backend.keyring.service import Keyring
from questionnaires.registry import get_instrument
from tests.identity.conftest import MovableClock, World, build_world, runtime_of

PHQ9 = get_instrument("phq9")


@dataclass(frozen=True)
class Field:
    table: str
    column: str
    row_id: uuid.UUID
    owner_id: uuid.UUID
    blob: bytes

    @property
    def dek_version(self) -> int:
        return parse_field(self.blob)[0].dek_version


def phq9(values: dict[int, int], **extra: Any) -> dict[str, Any]:
    return {
        "instrumentId": "phq9",
        "instrumentVersion": PHQ9.version,
        "answers": [{"linkId": f"phq9-{item}", "value": value} for item, value in values.items()],
        **extra,
    }


def backdated_clock() -> MovableClock:
    clock = MovableClock()
    clock.current -= timedelta(hours=1)
    return clock


async def populated_world(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:
    world = await build_world(api, clock)
    await populate(api, world, clock)
    return world


def engine_of(api: AsyncTestClient[Litestar]) -> AsyncEngine:
    return runtime_of(api).require_engine()


def separate_keyring(api: AsyncTestClient[Litestar], clock: MovableClock) -> Keyring:
    """What ``interlude keys rotate-deks`` builds: the same KEK, its own cache."""
    return Keyring(runtime_of(api).kek, clock=clock)


async def submit(api: AsyncTestClient[Litestar], world: World, patient: str, **values: int) -> str:
    answers = dict.fromkeys(range(1, 10), 1)
    answers.update({int(k.removeprefix("item")): v for k, v in values.items()})
    response = await api.post(
        "/api/v1/responses", json=phq9(answers), headers=world.patients[patient].headers
    )
    assert response.status_code == 200, response.text
    return str(response.json()["responseId"])


async def populate(api: AsyncTestClient[Litestar], world: World, clock: MovableClock) -> None:
    """Responses for every patient (one raises a suicidality alert, resolved with a note), and a
    treatment session with notes and observations for the clinic A patients."""
    for name in world.patients:
        for total in (1, 2):
            clock.advance(seconds=5)
            await submit(api, world, name, item1=total)
    clock.advance(seconds=5)
    await submit(api, world, "patient_a", item9=2)
    clinician = world.staff["clinician_a"]
    alerts = await api.get("/api/v1/alerts", headers=clinician.headers)
    assert alerts.status_code == 200, alerts.text
    alert_id = alerts.json()["items"][0]["id"]
    resolved = await api.post(
        f"/api/v1/alerts/{alert_id}/resolve",
        json={"outcome": "patient_contacted", "note": "Called; safety plan reviewed."},
        headers=clinician.headers,
    )
    assert resolved.status_code == 200, resolved.text
    runtime = runtime_of(api)
    for name in ("patient_a", "patient_a2"):
        patient = world.patients[name]
        async with runtime.require_sessionmaker()() as session:
            row = await sessions.record_session(
                session,
                runtime.keyring,
                patient_id=patient.id,
                data=SessionInput(
                    modality="n2o",
                    planned_start=clock.now() + timedelta(hours=6),
                    minutes=60,
                    n2o_concentration_percent=25,
                    notes=f"Planned session for {name}: fasting from 6am.",
                ),
                staff_id=clinician.id,
                now=clock.now(),
            )
            await sessions.record_observations(
                session,
                runtime.keyring,
                patient_id=patient.id,
                session_id=row.id,
                data=ObservationsInput(
                    observations=Observations(
                        blood_pressure=(
                            # A screening reading, within 12 hours before the session.
                            BloodPressureReading(at=clock.now(), systolic=128, diastolic=81),
                        ),
                        cadss6=3,
                    )
                ),
                now=clock.now(),
            )
            await session.commit()


async def read_back(api: AsyncTestClient[Litestar], world: World) -> dict[str, Any]:
    """Everything the API (and the session service, which has no route yet) decrypts."""
    seen: dict[str, Any] = {}
    clinicians = {"a": world.staff["clinician_a"], "b": world.staff["clinician_b"]}
    for name, patient in world.patients.items():
        clinician = clinicians[name.removeprefix("patient_")[0]]
        for path in (
            f"/api/v1/patients/{patient.id}",
            f"/api/v1/patients/{patient.id}/responses",
            f"/api/v1/patients/{patient.id}/scores/phq9",
        ):
            response = await api.get(path, headers=clinician.headers)
            assert response.status_code == 200, (path, response.text)
            seen[path] = response.json()
        me = await api.get("/api/v1/me", headers=patient.headers)
        assert me.status_code == 200, me.text
        seen[f"me:{name}"] = me.json()
    alerts = await api.get("/api/v1/alerts", headers=clinicians["a"].headers)
    for alert in alerts.json()["items"]:
        detail = await api.get(f"/api/v1/alerts/{alert['id']}", headers=clinicians["a"].headers)
        assert detail.status_code == 200, detail.text
        seen[f"alert:{alert['id']}"] = detail.json()
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as session:
        for name, patient in world.patients.items():
            rows = await sessions.list_sessions(session, patient.id)
            views = await sessions.session_views(session, runtime.keyring, rows)
            seen[f"sessions:{name}"] = [(v.id, v.notes, v.observations) for v in views]
    return seen


async def stored_fields(engine: AsyncEngine) -> list[Field]:
    """Every field ciphertext in the database, found through the registry."""
    fields = []
    async with engine.connect() as connection:
        for entry in ENCRYPTED_TABLES:
            table = SQLModel.metadata.tables[entry.table]
            rows = await connection.execute(
                select(
                    table.c[entry.row_id_column],
                    table.c[entry.owner_column],
                    *(table.c[c] for c in entry.columns),
                )
            )
            for row in rows:
                for index, column in enumerate(entry.columns):
                    blob = row[2 + index]
                    if blob is not None:
                        fields.append(Field(entry.table, column, row[0], row[1], bytes(blob)))
    return fields
