"""JSON request bodies decoded strictly, for every route (an app-wide ``before_request`` hook).

Litestar converts a JSON body into the handler's type laxly (``strict=False``): ``"false"`` and
``0`` become ``False``, ``"12"`` becomes ``12``, ``3.0`` an integer. A value of the wrong JSON type
is a client's bug, and in clinical data a guess at what it meant is worse than a refusal, so the
body is first decoded here with msgspec's strict rules into the same type, and a mismatch gets the
same 400 problem (field named, value never echoed) that the framework gives for any invalid body,
before the handler runs. Form posts (the dashboard) are left to the framework: a form's values are
all strings. A body that is not JSON at all is also left to it, which answers as it always has.

Cost: one more msgspec decode of the body (microseconds); the body is read once and cached.
"""

from typing import Any, Final

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.params import BodyKwarg

__all__ = ["strict_json_body"]

_CACHED: Final = "_interlude_strict_decoder"
"""The attribute a route handler keeps its body's strict decoder in (None: no JSON body)."""
_AT: Final = " - at `$"


def _decoder_for(handler: HTTPRouteHandler) -> msgspec.json.Decoder[Any] | None:
    if _CACHED in handler.__dict__:
        cached: msgspec.json.Decoder[Any] | None = handler.__dict__[_CACHED]
        return cached
    found = None
    field = handler.parsed_data_field
    if field is not None:
        kwarg = field.kwarg_definition
        media_type = kwarg.media_type if isinstance(kwarg, BodyKwarg) else None
        if media_type in (None, RequestEncodingType.JSON) and field.annotation is not Any:
            found = msgspec.json.Decoder(field.annotation, strict=True)
    handler.__dict__[_CACHED] = found  # one decoder per handler, for the handler's lifetime
    return found


def _field_problem(error: msgspec.ValidationError) -> dict[str, str]:
    """Litestar's shape for a body problem: the message without the value, the field's path."""
    message, _, path = str(error).partition(_AT)
    problem = {"message": message, "source": "body"}
    key = path.rstrip("`").removeprefix(".")
    if key:
        problem["key"] = key
    return problem


async def strict_json_body(request: Request[Any, Any, Any]) -> None:
    """Refuse (400) a JSON body whose values are not of the exact JSON types the handler takes."""
    decoder = _decoder_for(request.route_handler)
    if decoder is None:
        return
    body = await request.body()
    if not body:
        return  # the framework reports a missing body
    try:
        decoder.decode(body)
    except msgspec.ValidationError as error:
        raise ValidationException(
            detail=f"Validation failed for {request.method} {request.url.path}",
            extra=[_field_problem(error)],
        ) from None
    except msgspec.DecodeError:
        return  # not JSON: the framework refuses it as it always has
