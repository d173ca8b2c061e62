"""Submitting and reading responses through the API, on both databases."""

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse as FhirResponse
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlmodel import SQLModel

from backend.app import create_app
from backend.config import Settings
from backend.db.engine import create_engine
from backend.db.models.questionnaire_response import QuestionnaireResponse
from bench.common import asyncpg_dsn
from questionnaires.registry import get_instrument
from tests.identity.conftest import MovableClock, World, build_world

PHQ9 = get_instrument("phq9")


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def api(settings: Settings, clock: MovableClock) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as client:
        yield client


@pytest.fixture
async def world(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:
    return await build_world(api, clock)


def _phq9(values: dict[int, int], **extra: Any) -> dict[str, Any]:
    return {
        "instrumentId": "phq9",
        "instrumentVersion": PHQ9.version,
        "answers": [{"linkId": f"phq9-{item}", "value": value} for item, value in values.items()],
        **extra,
    }


ALL_ONES = dict.fromkeys(range(1, 10), 1)


async def _count(settings: Settings) -> int:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            table = QuestionnaireResponse.__table__  # type: ignore[attr-defined]
            return int(await connection.scalar(select(func.count()).select_from(table)) or 0)
    finally:
        await engine.dispose()


async def _creations(settings: Settings) -> list[Any]:
    """The audit log's response.create events."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            events = SQLModel.metadata.tables["audit_events"]
            statement = select(events).where(events.c.action == "response.create")
            return list((await connection.execute(statement)).all())
    finally:
        await engine.dispose()


async def test_a_patient_submits_and_gets_the_servers_score(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    response = await api.post(
        "/api/v1/responses", json=_phq9({**ALL_ONES, 9: 0}), headers=patient.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert next(iter(body)) == "safety"  # shown before anything else
    assert body["safety"] is None
    assert body["score"]["total"] == 8
    assert body["score"]["band"] == "mild"
    assert body["replayed"] is False


async def test_a_positive_suicide_item_returns_the_crisis_screen_first(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]  # locale en-GB
    response = await api.post(
        "/api/v1/responses", json=_phq9({**ALL_ONES, 9: 2}), headers=patient.headers
    )
    body = response.json()
    assert next(iter(body)) == "safety"
    screen = body["safety"]
    assert screen["showFirst"] is True
    assert screen["requiresAcknowledgement"] is True
    assert screen["urgency"] == "urgent"
    assert any(resource["phone"] == "999" for resource in screen["resources"])


async def test_a_skipped_suicide_item_is_asked_again_never_imputed(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    values = dict.fromkeys(range(1, 9), 1)  # item 9 missing
    body = (await api.post("/api/v1/responses", json=_phq9(values), headers=patient.headers)).json()
    assert body["reaskItems"] == ["phq9-9"]
    assert body["score"]["total"] is None  # never prorated over the suicide item


async def test_a_retry_with_the_same_key_returns_the_first_result_and_stores_once(
    api: AsyncTestClient[Litestar], world: World, settings: Settings
) -> None:
    patient = world.patients["patient_a"]
    headers = {**patient.headers, "Idempotency-Key": "phone-retry-0001"}
    first = await api.post("/api/v1/responses", json=_phq9(ALL_ONES), headers=headers)
    again = await api.post("/api/v1/responses", json=_phq9(ALL_ONES), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["responseId"] == first.json()["responseId"]
    assert again.json()["score"] == first.json()["score"]
    assert await _count(settings) == 1
    # Stored with the response (one statement on PostgreSQL), once: a replay stores no event.
    [event] = await _creations(settings)
    assert event.resource_id == first.json()["responseId"]
    assert event.resource_type == "questionnaire_response"
    assert (event.actor_id, event.actor_role) == (str(patient.id), "patient")
    assert (event.clinic_id, event.purpose, event.outcome) == (
        patient.clinic_id,
        "treatment",
        "success",
    )
    assert event.request_id


async def test_the_same_key_with_different_answers_is_a_conflict(
    api: AsyncTestClient[Litestar], world: World, settings: Settings
) -> None:
    patient = world.patients["patient_a"]
    headers = {**patient.headers, "Idempotency-Key": "phone-retry-0002"}
    await api.post("/api/v1/responses", json=_phq9(ALL_ONES), headers=headers)
    other = await api.post("/api/v1/responses", json=_phq9({**ALL_ONES, 1: 3}), headers=headers)
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    assert await _count(settings) == 1
    assert len(await _creations(settings)) == 1


async def test_fifty_concurrent_retries_store_exactly_one_row(
    api: AsyncTestClient[Litestar], world: World, settings: Settings
) -> None:
    patient = world.patients["patient_a"]
    response_id = str(uuid.uuid4())  # the client-generated id doubles as the idempotency key
    body = _phq9(ALL_ONES, responseId=response_id)
    results = await asyncio.gather(
        *(api.post("/api/v1/responses", json=body, headers=patient.headers) for _ in range(50))
    )
    assert {r.status_code for r in results} == {200}
    assert len({r.json()["responseId"] for r in results}) == 1
    assert sum(not r.json()["replayed"] for r in results) == 1
    assert await _count(settings) == 1
    assert [e.resource_id for e in await _creations(settings)] == [results[0].json()["responseId"]]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (_phq9({**ALL_ONES, 1: 7}), 422),
        (_phq9({**ALL_ONES}, instrumentVersion="99.0"), 422),
        ({"instrumentId": "no-such", "instrumentVersion": "1", "answers": []}, 422),
        ({**_phq9(ALL_ONES), "patientId": str(uuid.uuid4())}, 400),  # never from the body
        (_phq9(ALL_ONES, authored="2099-01-01T00:00:00Z"), 422),
        (_phq9(ALL_ONES, authored="2026-01-01T00:00:00"), 422),  # no offset
        ({"instrumentId": "madrs", "instrumentVersion": "1.0.0", "answers": []}, 422),
    ],
)
async def test_bad_submissions_are_4xx_problems_and_store_nothing(
    api: AsyncTestClient[Litestar],
    world: World,
    settings: Settings,
    body: dict[str, Any],
    status: int,
) -> None:
    response = await api.post(
        "/api/v1/responses", json=body, headers=world.patients["patient_a"].headers
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await _count(settings) == 0


async def test_staff_cannot_submit_as_a_patient(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    response = await api.post(
        "/api/v1/responses", json=_phq9(ALL_ONES), headers=world.staff["clinician_a"].headers
    )
    assert response.status_code in (401, 403)


async def test_a_fhir_questionnaire_response_scores_the_same(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    resource = FhirResponse.model_validate(
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": f"urn:interlude:fhir:Questionnaire/phq9|{PHQ9.version}",
            "authored": "2026-11-20T09:30:00+01:00",
            "item": [
                {"linkId": f"phq9-{i}", "answer": [{"valueCoding": _coding(i, 2)}]}
                for i in range(1, 10)
            ],
        }
    )
    response = await api.post(
        "/fhir/QuestionnaireResponse",
        json=resource.model_dump(mode="json", exclude_none=True),
        headers=world.patients["patient_a"].headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["score"]["total"] == 18
    assert response.json()["authoredAt"].startswith("2026-11-20T08:30:00")


def _coding(item: int, value: int) -> dict[str, Any]:
    from questionnaires.fhir import render_questionnaire

    rendered = render_questionnaire(PHQ9)
    entry = next(i for i in rendered["item"] if i["linkId"] == f"phq9-{item}")
    option = next(o for o in entry["answerOption"] if _ordinal(o) == value)
    return dict(option["valueCoding"])


def _ordinal(option: dict[str, Any]) -> int | None:
    for extension in option.get("valueCoding", {}).get("extension", []) + option.get(
        "extension", []
    ):
        if "ordinalValue" in extension["url"]:
            return int(extension["valueDecimal"])
    return None


async def test_patients_and_their_clinicians_read_the_history_others_cannot(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    for value in (1, 2, 3):
        await api.post(
            "/api/v1/responses", json=_phq9({**ALL_ONES, 1: value}), headers=patient.headers
        )
    path = f"/api/v1/patients/{patient.id}/responses?limit=2"
    own = await api.get(path, headers=patient.headers)
    assert own.status_code == 200
    page = own.json()
    assert len(page["items"]) == 2
    assert page["items"][0]["answers"][0] == {"linkId": "phq9-1", "value": 3}  # newest first
    rest = await api.get(path + f"&cursor={page['nextCursor']}", headers=patient.headers)
    assert len(rest.json()["items"]) == 1
    assert rest.json()["nextCursor"] is None

    clinician = await api.get(path, headers=world.staff["clinician_a"].headers)
    assert clinician.status_code == 200
    series = await api.get(
        f"/api/v1/patients/{patient.id}/scores/{PHQ9.trajectory_key}",
        headers=world.staff["clinician_a"].headers,
    )
    assert [p["total"] for p in series.json()["points"]] == [9, 10, 11]

    for outsider in (
        world.staff["clinician_b"],
        world.staff["researcher_a"],
        world.staff["operator"],
    ):
        assert (await api.get(path, headers=outsider.headers)).status_code in (403, 404)
    other_patient = world.patients["patient_a2"]
    assert (await api.get(path, headers=other_patient.headers)).status_code in (403, 404)
    bad_cursor = await api.get(path + "&cursor=not-ours", headers=patient.headers)
    assert bad_cursor.status_code == 422


async def test_no_answer_or_score_is_stored_in_plain_text(
    api: AsyncTestClient[Litestar], world: World, settings: Settings
) -> None:
    """Scan the raw database: the answers and score exist only as ciphertext."""
    patient = world.patients["patient_a"]
    marker_values = dict.fromkeys(range(1, 10), 3)
    body = (
        await api.post("/api/v1/responses", json=_phq9(marker_values), headers=patient.headers)
    ).json()
    assert body["score"]["total"] == 27
    raw = await _raw_rows(settings)
    # What a plaintext (msgpack) encoding would contain: item ids, field names, the band.
    for needle in (b"phq9-", b"linkId", b"link_id", b"severe", b"total", b"safety_flags"):
        assert not any(needle in cell for cell in raw), needle
    assert raw  # the rows were read


async def _raw_rows(settings: Settings) -> list[bytes]:
    table = "questionnaire_responses"
    if settings.sqlite_path is not None:
        with sqlite3.connect(settings.sqlite_path) as db:
            rows = db.execute(f"SELECT answers_ct, score_ct FROM {table}").fetchall()
        return [bytes(cell) for row in rows for cell in row]
    import asyncpg

    connection = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await connection.fetch(f"SELECT answers_ct, score_ct FROM {table}")
    finally:
        await connection.close()
    return [bytes(cell) for row in rows for cell in row]
