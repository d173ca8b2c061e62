"""The patient's home blood pressure and cognition items through the real submission endpoint, on
both databases: the server raises the alert, stores the reading only encrypted, and refuses an
implausible one without storing anything."""

import sqlite3
from collections.abc import Mapping
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.config import Settings
from bench.common import asyncpg_dsn
from questionnaires.answers import AnswerValue
from questionnaires.registry import get_instrument
from tests.alerts.stored import RESPONSES, alerts_of, count, occurrences_for
from tests.identity.conftest import PatientAccount, World


def _body(instrument_id: str, answers: Mapping[str, AnswerValue]) -> dict[str, Any]:
    instrument = get_instrument(instrument_id)
    return {
        "instrumentId": instrument.id,
        "instrumentVersion": instrument.version,
        "answers": [{"linkId": k, "value": v} for k, v in answers.items()],
    }


async def _post(
    api: AsyncTestClient[Litestar],
    patient: PatientAccount,
    instrument_id: str,
    answers: Mapping[str, AnswerValue],
) -> Any:
    return await api.post(
        "/api/v1/responses", headers=patient.headers, json=_body(instrument_id, answers)
    )


async def test_a_high_home_reading_raises_an_urgent_alert_and_is_stored_encrypted(
    api: AsyncTestClient[Litestar], world: World, settings: Settings
) -> None:
    patient = world.patients["patient_a"]
    reading = {"hbp-measured": True, "hbp-systolic": 186, "hbp-diastolic": 97}
    submitted = await _post(api, patient, "home-blood-pressure", reading)
    assert submitted.status_code == 200, submitted.text
    # URGENT for the clinician only: §5.2 gives the patient no instruction for a reading alone.
    assert submitted.json()["patientActions"] == []
    assert submitted.json()["safety"] is None

    [alert] = await alerts_of(api, patient.id)
    assert (alert.kind, alert.severity, alert.status) == ("BLOOD_PRESSURE", "urgent", "open")
    assert (alert.rule_id, alert.parameter_version) == ("ketamine@1.1.0", "interlude-default@1.2.0")
    [occurrence] = await occurrences_for(api, patient.id)
    assert occurrence.patient_action is None

    raw = await _raw_cells(settings)
    assert len(raw) == 3  # answers and score of the response, evidence of the occurrence
    # What a plaintext (msgpack) encoding would carry: the item ids and field names.
    for needle in (b"hbp-", b"systolic", b"link_id", b"linkId", b"measures"):
        assert not any(needle in cell for cell in raw), needle


async def test_a_patient_without_a_monitor_completes_the_form_without_an_alert(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    for answers in ({}, {"hbp-measured": False}, {"hbp-measured": True, "hbp-systolic": 179,
                                                   "hbp-diastolic": 109}):  # fmt: skip
        submitted = await _post(api, patient, "home-blood-pressure", answers)
        assert submitted.status_code == 200, submitted.text
        assert submitted.json()["reaskItems"] == []
    assert await count(api, RESPONSES) == 3
    assert await alerts_of(api, patient.id) == []


@pytest.mark.parametrize(
    "answers",
    [
        {"hbp-measured": True, "hbp-systolic": 1860, "hbp-diastolic": 97},  # a typing error
        {"hbp-measured": True, "hbp-systolic": 186},  # half a reading
        {"hbp-measured": True, "hbp-systolic": "186", "hbp-diastolic": 97},
        {"hbp-systolic": 186, "hbp-diastolic": 97},  # no reading was said to be taken
        {"hbp-measured": True, "hbp-systolic": 97, "hbp-diastolic": 186},  # swapped
    ],
)
async def test_an_implausible_reading_is_a_422_problem_and_nothing_is_stored(
    api: AsyncTestClient[Litestar], world: World, answers: dict[str, AnswerValue]
) -> None:
    patient = world.patients["patient_a"]
    refused = await _post(api, patient, "home-blood-pressure", answers)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    # The request id (random hex, in the body twice) may hold any digits: not part of the check.
    shown = refused.text.replace(refused.json()["request_id"], "")
    assert "1860" not in shown
    assert "186" not in shown
    assert await count(api, RESPONSES) == 0
    assert await alerts_of(api, patient.id) == []


async def test_new_memory_or_concentration_problems_raise_a_routine_alert(
    api: AsyncTestClient[Litestar], world: World
) -> None:
    patient = world.patients["patient_a"]
    no = await _post(api, patient, "ketamine-cognition", {"kc-memory-concentration": False})
    assert no.status_code == 200, no.text
    assert await alerts_of(api, patient.id) == []
    yes = await _post(api, patient, "ketamine-cognition", {"kc-memory-concentration": True})
    assert yes.status_code == 200, yes.text
    assert yes.json()["patientActions"] == []
    assert [(a.kind, a.severity) for a in await alerts_of(api, patient.id)] == [
        ("COGNITIVE_PROBLEMS", "routine")
    ]


async def _raw_cells(settings: Settings) -> list[bytes]:
    """The encrypted columns as the database holds them, read around the application."""
    queries = (
        "SELECT answers_ct, score_ct FROM questionnaire_responses",
        "SELECT evidence_ct FROM alert_occurrences",
    )
    if settings.sqlite_path is not None:
        with sqlite3.connect(settings.sqlite_path) as db:
            rows = [row for query in queries for row in db.execute(query).fetchall()]
        return [bytes(cell) for row in rows for cell in row]
    import asyncpg

    connection = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = [row for query in queries for row in await connection.fetch(query)]
    finally:
        await connection.close()
    return [bytes(cell) for row in rows for cell in row]
