"""The OpenAPI document as the service really behaves, where Litestar's generator says otherwise.

Two corrections, applied to the generated document before it is served:

- Errors. Every error leaves as an RFC 9457 problem document, ``application/problem+json``
  (``backend/lib/problems.py``), but Litestar documents the 400 it adds to each operation as
  ``application/json`` with its own error shape. Every 4xx/5xx response is documented as the
  ``Problem`` schema, and every operation gets a ``default`` response saying the same for the
  errors it does not list (401, 403, 404, 409, 413, 429, 503 ...), so clients and the fuzz test
  (tests/fuzz) check error bodies too.
- Unions. Litestar renders a Python union as ``oneOf``, which requires a value to match exactly
  one member. Python unions are inclusive and members overlap: an integer is also a JSON Schema
  ``number``, so ``bool | int | float | str`` (an answer value) rejected every integer. A union
  without a discriminator is rendered as ``anyOf``.
"""

from collections.abc import Mapping
from typing import Any, Final

import msgspec
from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

from backend.lib.problems import PROBLEM_MEDIA_TYPE, Problem

_REF_TEMPLATE: Final = "#/components/schemas/{name}"
_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})
_PROBLEM_CONTENT: Final[dict[str, Any]] = {
    PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF_TEMPLATE.format(name=Problem.__name__)}}
}


def _problem_components() -> dict[str, Any]:
    _, components = msgspec.json.schema_components((Problem,), ref_template=_REF_TEMPLATE)
    return components


def _is_error_status(status: str) -> bool:
    return status[:1] in {"4", "5"}


def _unions_as_any_of(node: Any) -> Any:
    if isinstance(node, Mapping):
        converted = {key: _unions_as_any_of(value) for key, value in node.items()}
        if "oneOf" in converted and "discriminator" not in converted:
            converted["anyOf"] = converted.pop("oneOf")
        return converted
    if isinstance(node, list):
        return [_unions_as_any_of(item) for item in node]
    return node


def _document_errors(operation: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = dict(operation.get("responses") or {})
    for status, response in list(responses.items()):
        if _is_error_status(status) and isinstance(response, Mapping) and "$ref" not in response:
            responses[status] = {
                "description": response.get("description") or "An error",
                "content": dict(_PROBLEM_CONTENT),
            }
    responses.setdefault(
        "default",
        {
            "description": "An error, as an RFC 9457 problem document",
            "content": dict(_PROBLEM_CONTENT),
        },
    )
    return {**operation, "responses": responses}


def correct_openapi(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` with problem+json errors and inclusive unions (module docstring)."""
    corrected: dict[str, Any] = _unions_as_any_of(document)
    paths: dict[str, Any] = {}
    for path, item in (corrected.get("paths") or {}).items():
        paths[path] = {
            key: _document_errors(value)
            if key in _HTTP_METHODS and isinstance(value, dict)
            else value
            for key, value in item.items()
        }
    corrected["paths"] = paths
    components = dict(corrected.get("components") or {})
    schemas = dict(components.get("schemas") or {})
    for name, schema in _problem_components().items():
        # An existing component of the same name would be a different type: refuse to shadow it.
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"OpenAPI component {name!r} is already taken")
        schemas[name] = schema
    components["schemas"] = schemas
    corrected["components"] = components
    return corrected


class CorrectedJsonRenderPlugin(JsonRenderPlugin):
    """Serves ``/schema/openapi.json`` corrected by :func:`correct_openapi` (computed once)."""

    def __init__(self) -> None:
        super().__init__()
        self._corrected: dict[str, Any] | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._corrected is None:
            self._corrected = correct_openapi(openapi_schema)
        return self.render_json(request, self._corrected)
