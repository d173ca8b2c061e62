"""The served OpenAPI document describes errors and unions as the service really sends them."""

from typing import Any

import jsonschema
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.lib.openapi import correct_openapi
from backend.lib.problems import PROBLEM_MEDIA_TYPE

PROBLEM_REF = "#/components/schemas/Problem"
_METHODS = {"get", "put", "post", "delete", "patch"}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    ]


def _validator(document: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    )


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_walk(item))
    return found


async def _document(client: AsyncTestClient[Litestar]) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_every_error_response_is_documented_as_problem_json(
    client: AsyncTestClient[Litestar],
) -> None:
    document = await _document(client)
    operations = _operations(document)
    assert len(operations) >= 10
    for method, path, operation in operations:
        responses = operation["responses"]
        assert "default" in responses, (method, path)
        for status, response in responses.items():
            if status == "default" or status[0] in "45":
                assert response["content"] == {
                    PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}
                }, (method, path, status)


async def test_unions_admit_a_value_matching_several_members(
    client: AsyncTestClient[Litestar],
) -> None:
    document = await _document(client)
    assert not [n for n in _walk(document) if "oneOf" in n and "discriminator" not in n]
    # An integer answer is both a JSON Schema integer and a number; it must still be valid.
    answer = _validator(document, "Answer")
    for value in (3, 2.5, True, "yes"):
        answer.validate({"linkId": "q1", "value": value})
    assert not answer.is_valid({"linkId": "q1", "value": None})


async def test_real_error_bodies_match_the_documented_problem_schema(
    client: AsyncTestClient[Litestar],
) -> None:
    document = await _document(client)
    problem = _validator(document, "Problem")
    errors = [
        await client.get("/api/v1/nothing-here"),  # 404 from routing
        await client.post("/healthz", content=b"{}"),  # 405
        await client.get("/api/v1/me"),  # 401: no token
        await client.post(  # 400: invalid body on a public route
            "/api/v1/enrolment/redeem", content=b'{"code": 7}', headers={"content-type": "x"}
        ),
    ]
    assert {response.status_code for response in errors} >= {400, 401, 404, 405}
    for response in errors:
        assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
        problem.validate(response.json())


def test_correction_keeps_discriminated_unions_and_listed_defaults() -> None:
    tagged = {"oneOf": [{"$ref": "#/a"}, {"$ref": "#/b"}], "discriminator": {"propertyName": "k"}}
    listed_default = {"description": "custom", "content": {"text/plain": {}}}
    document = {
        "paths": {
            "/x": {
                "parameters": [],
                "get": {
                    "responses": {
                        "200": {"content": {"application/json": {"schema": tagged}}},
                        "409": {"description": "Conflict", "content": {"application/json": {}}},
                        "default": listed_default,
                    }
                },
            }
        },
        "components": {"schemas": {"Open": {"oneOf": [{"type": "integer"}, {"type": "number"}]}}},
    }
    corrected = correct_openapi(document)
    responses = corrected["paths"]["/x"]["get"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == tagged
    assert responses["409"] == {
        "description": "Conflict",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
    }
    assert responses["default"] == listed_default
    assert corrected["components"]["schemas"]["Open"] == {
        "anyOf": [{"type": "integer"}, {"type": "number"}]
    }
    assert "Problem" in corrected["components"]["schemas"]
    # The input is left alone.
    assert "oneOf" in document["components"]["schemas"]["Open"]  # type: ignore[index]


def test_correction_refuses_to_shadow_a_different_component_named_problem() -> None:
    document = {"paths": {}, "components": {"schemas": {"Problem": {"type": "string"}}}}
    with pytest.raises(ValueError, match="Problem"):
        correct_openapi(document)
