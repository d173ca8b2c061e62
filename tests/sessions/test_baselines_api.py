"""Course baselines (B0) through the running app (both databases): a patient's answers before
the first session are B0 without anyone recording them; a clinician records B0 from a stored
response or from answers entered in clinic (scored, encrypted, audited); bad input is a problem
and changes nothing; the alert engine reads exactly the recorded B0."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlmodel import col

from backend.db.models.audit_event import AuditLogEntry
from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import CourseBaseline
from backend.domain.alerts.clinic_settings import parameters_for_clinic
from backend.domain.alerts.history import patient_timeline
from tests.alerts.builders import qids_answers
from tests.identity.conftest import (  # noqa: F401  (fixtures used by name)
    MovableClock,
    World,
    api,
    build_world,
    identity_app,
    runtime_of,
)
from tests.identity.conftest import clock as clock
from tests.sessions.courses import phq9_answer_list, plan_course, submit


@pytest.fixture
async def people(api: AsyncTestClient[Litestar], clock: MovableClock) -> World:  # noqa: F811
    return await build_world(api, clock)


async def _count(api: AsyncTestClient[Litestar], model: Any) -> int:  # noqa: F811
    async with runtime_of(api).require_sessionmaker()() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_baselines_derived_recorded_linked_and_removed(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"].headers
    patient = people.patients["patient_a"]
    course = await plan_course(api, clinician, patient.id, clock.now() + timedelta(days=2))

    # The patient answers the protocol's baseline PHQ-9 in the app: that is B0 (§2.4).
    from_app = await submit(api, patient.headers, "phq9", phq9_answer_list(18))
    read = await api.get(f"{course}/baselines", headers=clinician)
    assert read.status_code == 200, read.text
    (derived,) = [b for b in read.json()["baselines"] if b["instrument_id"] == "phq9"]
    assert (derived["source"], derived["response_id"], derived["total"]) == (
        "derived",
        from_app,
        18,
    )

    # Entered in clinic from the intake form a day earlier: recorded, scored, encrypted.
    recorded = await api.put(
        f"{course}/baselines/phq9",
        headers=clinician,
        json={
            "answers": phq9_answer_list(21),
            "authored": (clock.now() - timedelta(days=1)).isoformat(),
        },
    )
    assert recorded.status_code == 200, recorded.text
    body = recorded.json()
    assert (body["source"], body["total"], body["trajectory_key"]) == ("recorded", 21, "phq9-2w")
    assert body["recorded_by"] == str(people.staff["clinician_a"].id)
    runtime = runtime_of(api)
    async with runtime.require_sessionmaker()() as s:
        stored = await s.get(QuestionnaireResponse, uuid.UUID(body["response_id"]))
        assert stored is not None
        assert stored.source == "clinician"
        assert b"21" not in bytes(stored.score_ct)
        # The alert engine's B0 is the recorded one, though the app's answer is later.
        timeline = await patient_timeline(
            s,
            runtime.keyring,
            patient.id,
            await parameters_for_clinic(s, patient.clinic_id),
            now=clock.now(),
        )
    assert [(b.response_id, b.total) for b in timeline.baselines] == [(body["response_id"], 21)]
    read = await api.get(f"{course}/baselines", headers=clinician)
    (phq9,) = [b for b in read.json()["baselines"] if b["instrument_id"] == "phq9"]
    assert (phq9["source"], phq9["response_id"]) == ("recorded", body["response_id"])

    # Linking the patient's own response replaces the choice.
    linked = await api.put(
        f"{course}/baselines/phq9", headers=clinician, json={"response_id": from_app}
    )
    assert linked.status_code == 200, linked.text
    assert (linked.json()["response_id"], linked.json()["total"]) == (from_app, 18)
    assert await _count(api, CourseBaseline) == 1

    removed = await api.delete(f"{course}/baselines/phq9", headers=clinician)
    assert removed.status_code == 204, removed.text
    assert await _count(api, CourseBaseline) == 0
    read = await api.get(f"{course}/baselines", headers=clinician)
    (phq9,) = [b for b in read.json()["baselines"] if b["instrument_id"] == "phq9"]
    assert phq9["source"] == "derived"

    async with runtime.require_sessionmaker()() as s:
        audited = await s.scalar(
            select(func.count())
            .select_from(AuditLogEntry)
            .where(
                col(AuditLogEntry.action).in_(("course_baseline.record", "course_baseline.delete"))
            )
        )
    assert audited == 3


async def test_bad_baselines_are_problems_and_change_nothing(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    clinician = people.staff["clinician_a"].headers
    patient = people.patients["patient_a"]
    base = f"/api/v1/patients/{patient.id}"
    start = clock.now() - timedelta(days=1)  # the first session was yesterday
    before = (start - timedelta(days=1)).isoformat()
    course = await plan_course(api, clinician, patient.id, start)
    gad7 = await submit(
        api, patient.headers, "gad7", [{"linkId": f"gad7-{n}", "value": 1} for n in range(1, 8)]
    )
    others = await submit(api, people.patients["patient_a2"].headers, "phq9", phq9_answer_list(12))
    responses_before = await _count(api, QuestionnaireResponse)
    prorated = phq9_answer_list(15)[1:]  # item 1 unanswered: a prorated total

    cases: list[tuple[str, str, dict[str, Any], dict[str, str], int, str]] = [
        (
            "put",
            f"{base}/courses/{uuid.uuid4()}/baselines/phq9",
            {"answers": phq9_answer_list(9)},
            clinician,
            404,
            "",
        ),
        (
            "put",
            f"{course}/baselines/phq9",
            {"response_id": others},
            clinician,
            404,
            "no such response",
        ),
        (
            "put",
            f"{course}/baselines/phq9",
            {"response_id": gad7},
            clinician,
            422,
            "wrong_instrument",
        ),
        (
            "put",
            f"{course}/baselines/side-effects",
            {"answers": []},
            clinician,
            422,
            "wrong_instrument",
        ),
        (
            "put",
            f"{course}/baselines/no-such-form",
            {"answers": []},
            clinician,
            422,
            "unknown_instrument",
        ),
        (
            "put",
            f"{course}/baselines/phq9",
            {"answers": prorated, "authored": before},
            clinician,
            422,
            "incomplete_score",
        ),
        (
            "put",
            f"{course}/baselines/phq9",
            {"answers": phq9_answer_list(9), "authored": (start + timedelta(hours=3)).isoformat()},
            clinician,
            422,
            "after_first_session",
        ),
        (
            "put",
            f"{course}/baselines/phq9",
            {"answers": phq9_answer_list(9), "response_id": gad7},
            clinician,
            422,
            "either",
        ),
        (
            "put",
            f"{course}/baselines/phq9",
            {"answers": phq9_answer_list(9), "colour": "red"},
            clinician,
            400,
            "",
        ),
        (
            "put",
            f"{course}/baselines/phq9",
            {"answers": phq9_answer_list(9)},
            people.staff["clinician_b"].headers,
            403,
            "",
        ),
        ("delete", f"{course}/baselines/phq9", {}, clinician, 404, ""),
    ]
    for method, url, body, headers, status, text in cases:
        if method == "put":
            answer = await api.put(url, headers=headers, json=body)
        else:
            answer = await api.delete(url, headers=headers)
        assert answer.status_code == status or (status == 403 and answer.status_code == 404), (
            url,
            answer.text,
        )
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert text in answer.text
    assert await _count(api, CourseBaseline) == 0
    assert await _count(api, QuestionnaireResponse) == responses_before

    ended = await api.post(f"{course}/end", headers=clinician)
    assert ended.status_code == 200, ended.text
    closed = await api.put(
        f"{course}/baselines/gad7", headers=clinician, json={"response_id": gad7}
    )
    assert closed.status_code == 409
    assert await _count(api, CourseBaseline) == 0


def _qids(total: int, *, partial: bool) -> list[dict[str, Any]]:
    answers = qids_answers(total)
    if partial:
        del answers["qids-2"]  # the sleep domain still scores from items 1, 3 and 4
    return [{"linkId": k, "value": v} for k, v in answers.items()]


async def test_a_partially_missing_domain_maxima_score_is_never_a_baseline(
    api: AsyncTestClient[Litestar],  # noqa: F811
    people: World,
    clock: MovableClock,
) -> None:
    """QIDS-SR16 scores a domain from its answered items, so an item left out still gives a
    total that is not prorated; it is partially missing all the same, and §2.4 lets such a
    score be no more than a candidate: never B0, derived or recorded."""
    clinician = people.staff["clinician_a"].headers
    patient = people.patients["patient_a"]
    base = f"/api/v1/patients/{patient.id}"
    course = await plan_course(api, clinician, patient.id, clock.now() + timedelta(days=2))
    partial = await submit(api, patient.headers, "qids-sr16", _qids(15, partial=True))
    stored = await api.get(f"{base}/responses", headers=clinician)
    assert stored.status_code == 200, stored.text
    (score,) = [r["score"] for r in stored.json()["items"] if r["responseId"] == partial]
    assert (score["total"], score["prorated"], score["missingItems"]) == (15, False, ["qids-2"])
    series = await api.get(f"{base}/scores/qids-sr16-7d", headers=clinician)
    assert series.status_code == 200, series.text
    assert [(p["total"], p["missingItems"]) for p in series.json()["points"]] == [(15, ["qids-2"])]

    # Not derived as B0 from the app ...
    read = await api.get(f"{course}/baselines", headers=clinician)
    assert read.status_code == 200, read.text
    assert not [b for b in read.json()["baselines"] if b["instrument_id"] == "qids-sr16"]

    # ... nor recorded by a clinician, from the stored response or from answers entered in clinic.
    responses_before = await _count(api, QuestionnaireResponse)
    for body, pointer in (
        ({"response_id": partial}, "/response_id"),
        (
            {
                "answers": _qids(15, partial=True),
                "authored": (clock.now() - timedelta(days=1)).isoformat(),
            },
            "/answers",
        ),
    ):
        refused = await api.put(f"{course}/baselines/qids-sr16", headers=clinician, json=body)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        (problem,) = refused.json()["errors"]
        assert (problem["code"], problem["pointer"]) == ("incomplete_score", pointer)
        assert "qids-2" in problem["message"]
    assert await _count(api, CourseBaseline) == 0
    assert await _count(api, QuestionnaireResponse) == responses_before

    # Every item answered: recorded.
    recorded = await api.put(
        f"{course}/baselines/qids-sr16",
        headers=clinician,
        json={
            "answers": _qids(15, partial=False),
            "authored": (clock.now() - timedelta(days=1)).isoformat(),
        },
    )
    assert recorded.status_code == 200, recorded.text
    assert (recorded.json()["source"], recorded.json()["total"]) == ("recorded", 15)
