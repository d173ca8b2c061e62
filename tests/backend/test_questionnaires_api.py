"""The questionnaire catalogue over HTTP: our JSON with ETags, FHIR R4, and answer problems."""

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from fhir.resources.R4B.questionnaire import Questionnaire
from litestar import Litestar, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.db import migrate
from questionnaires.answers import Submission
from questionnaires.model import Instrument
from questionnaires.registry import get_instrument, list_instruments, score_submission
from tests.conftest import SettingsFactory


@post("/test/score", opt={"public": True})
async def _score(data: JSONBody[Submission]) -> dict[str, int | None]:
    return {"total": score_submission(data).total}


@pytest.fixture
async def api(
    make_settings: SettingsFactory, tmp_path: Path
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    # The catalogue touches no database: one dialect is enough here.
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'q.sqlite3'}")
    await migrate.upgrade_async(settings)
    async with AsyncTestClient(app=create_app(settings, extra_route_handlers=[_score])) as client:
        yield client


async def test_the_catalogue_lists_every_shipped_instrument(api: AsyncTestClient[Litestar]) -> None:
    response = await api.get("/api/v1/questionnaires")
    assert response.status_code == 200
    items = response.json()["items"]
    assert {item["id"] for item in items} == {i.id for i in list_instruments()}
    phq9 = next(item for item in items if item["id"] == "phq9")
    assert phq9["fhirHref"] == "/fhir/Questionnaire/phq9"
    assert phq9["requiresLicensedText"] is False


async def test_an_unchanged_catalogue_revalidates_with_304(api: AsyncTestClient[Litestar]) -> None:
    first = await api.get("/api/v1/questionnaires/phq9")
    etag = first.headers["etag"]
    again = await api.get("/api/v1/questionnaires/phq9", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    other = await api.get("/api/v1/questionnaires/phq9", headers={"if-none-match": '"stale"'})
    assert other.status_code == 200
    assert first.headers["etag"] != (await api.get("/api/v1/questionnaires/gad7")).headers["etag"]


async def test_a_definition_is_served_exactly_as_the_catalogue_holds_it(
    api: AsyncTestClient[Litestar],
) -> None:
    response = await api.get("/api/v1/questionnaires/phq9")
    served = msgspec.json.decode(response.content, type=Instrument)
    assert served == get_instrument("phq9")
    pinned = await api.get(f"/api/v1/questionnaires/phq9?version={served.version}")
    assert pinned.status_code == 200


async def test_licensed_instruments_ship_structure_without_wording(
    api: AsyncTestClient[Litestar],
) -> None:
    licensed = [i for i in list_instruments() if i.requires_licensed_text]
    assert licensed
    for instrument in licensed:
        body = (await api.get(f"/api/v1/questionnaires/{instrument.id}")).json()
        assert body["requiresLicensedText"] is True
        assert all(item.get("text") is None for item in body["items"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/questionnaires/no-such-instrument",
        "/api/v1/questionnaires/phq9?version=99.0",
        "/fhir/Questionnaire/no-such-instrument",
    ],
)
async def test_an_unknown_questionnaire_is_a_404_problem(
    api: AsyncTestClient[Litestar], path: str
) -> None:
    response = await api.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:interlude:problem:not-found"


async def test_every_instrument_renders_as_a_valid_fhir_questionnaire(
    api: AsyncTestClient[Litestar],
) -> None:
    for instrument in list_instruments():
        response = await api.get(f"/fhir/Questionnaire/{instrument.id}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+json")
        resource = Questionnaire.model_validate(response.json())
        assert resource.version == instrument.version
        assert response.headers["etag"]


async def test_invalid_answers_are_a_422_naming_each_item_and_never_the_value(
    api: AsyncTestClient[Litestar],
) -> None:
    version = get_instrument("phq9").version
    body = {
        "instrumentId": "phq9",
        "instrumentVersion": version,
        "answers": [
            {"linkId": "phq9-1", "value": 7},
            {"linkId": "no-such-item", "value": 1},
        ],
    }
    response = await api.post("/test/score", json=body)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:interlude:problem:invalid-answers"
    pointers = {(error["pointer"], error["code"]) for error in problem["errors"]}
    assert ("no-such-item", "unknown_item") in pointers
    assert any(pointer == "phq9-1" for pointer, _code in pointers)
    assert "7" not in problem["detail"]
