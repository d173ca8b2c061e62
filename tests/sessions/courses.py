"""A patient's course and answers through the running app, for the tests that read a course's
baselines (recording them, their If-Match, the patient page)."""

from datetime import datetime
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.domain.demo.cohort import phq9_answers


def phq9_answer_list(total: int) -> list[dict[str, Any]]:
    """PHQ-9 answers with this total, as the app sends them."""
    return [msgspec.to_builtins(a) for a in phq9_answers(total)]


async def submit(
    api: AsyncTestClient[Litestar],
    headers: dict[str, str],
    instrument_id: str,
    answers: list[dict[str, Any]],
    *,
    authored: datetime | None = None,
) -> str:
    """A patient's submission (``authored``: answered offline then); the stored response's id."""
    body: dict[str, Any] = {
        "instrumentId": instrument_id,
        "instrumentVersion": "1.0.0",
        "answers": answers,
    }
    if authored is not None:
        body["authored"] = authored.isoformat()
    submitted = await api.post("/api/v1/responses", headers=headers, json=body)
    assert submitted.status_code == 200, submitted.text
    return str(submitted.json()["responseId"])


async def plan_course(
    api: AsyncTestClient[Litestar], headers: dict[str, str], patient_id: object, start: datetime
) -> str:
    """An N2O session planned at ``start``, which opens a course; the course's URL."""
    base = f"/api/v1/patients/{patient_id}"
    planned = await api.post(
        f"{base}/sessions",
        headers=headers,
        json={
            "modality": "n2o",
            "planned_start": start.isoformat(),
            "minutes": 60,
            "n2o_concentration_percent": 50,
        },
    )
    assert planned.status_code == 201, planned.text
    return f"{base}/courses/{planned.json()['course_id']}"
