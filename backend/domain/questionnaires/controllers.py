"""Questionnaire catalogue endpoints.

The catalogue is versioned data that changes only with a release, so each representation is
encoded once and served with a strong ETag; apps revalidate with ``If-None-Match`` and get a 304.
Instruments whose wording is licensed ship structure only (``requiresLicensedText``), never text.
"""

import hashlib
from functools import cache
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery

from backend.domain.questionnaires.schemas import InstrumentList, InstrumentSummary
from backend.lib.errors import NotFound
from questionnaires.errors import UnknownInstrumentError
from questionnaires.fhir import render_questionnaire
from questionnaires.model import Instrument
from questionnaires.registry import catalogue, list_instruments

FHIR_JSON = "application/fhir+json"
_encoder = msgspec.json.Encoder()


class _Representation(msgspec.Struct, frozen=True):
    body: bytes
    etag: str


def _represent(body: bytes) -> _Representation:
    return _Representation(body=body, etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _instrument(instrument_id: str, version: str | None) -> Instrument:
    try:
        return catalogue().get(instrument_id, version)
    except UnknownInstrumentError:
        which = instrument_id if version is None else f"{instrument_id} version {version}"
        raise NotFound(f"no questionnaire {which} in the catalogue") from None


@cache
def _instrument_json(instrument_id: str, version: str | None) -> _Representation:
    return _represent(_encoder.encode(_instrument(instrument_id, version)))


@cache
def _instrument_fhir(instrument_id: str, version: str | None) -> _Representation:
    return _represent(_encoder.encode(render_questionnaire(_instrument(instrument_id, version))))


@cache
def _catalogue_json() -> _Representation:
    items = [
        InstrumentSummary(
            id=i.id,
            version=i.version,
            title=i.title,
            respondent=i.respondent,
            recall=i.recall.text,
            trajectory_key=i.trajectory_key,
            validated=i.validated,
            requires_licensed_text=i.requires_licensed_text,
            licence_status=i.licence.status,
            href=f"/api/v1/questionnaires/{i.id}?version={i.version}",
            fhir_href=f"/fhir/Questionnaire/{i.id}",
        )
        for i in sorted(list_instruments(), key=lambda i: i.id)
    ]
    return _represent(_encoder.encode(InstrumentList(items=items)))


def _conditional(
    request: Request[Any, Any, Any], rep: _Representation, media_type: str
) -> Response[bytes]:
    headers = {"etag": rep.etag, "cache-control": "no-cache"}
    candidates = {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}
    if rep.etag in candidates or "*" in candidates:
        return Response(b"", status_code=304, headers=headers)
    return Response(rep.body, media_type=media_type, headers=headers)


class QuestionnaireController(Controller):
    path = "/api/v1/questionnaires"
    tags = ["questionnaires"]  # noqa: RUF012  (Litestar reads it as a class attribute)
    # The catalogue holds no patient data: instrument structure and public wording only.
    opt = {"public": True}  # noqa: RUF012

    @get(
        "/",
        summary="List the questionnaires this service can score (latest versions)",
        # The body is encoded once and cached; document what it is, not "bytes".
        responses={200: ResponseSpec(InstrumentList, description="The catalogue")},
    )
    async def list_questionnaires(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        return _conditional(request, _catalogue_json(), "application/json")

    @get(
        "/{instrument_id:str}",
        summary="One questionnaire definition (latest or ?version=)",
        responses={200: ResponseSpec(Instrument, description="The instrument definition")},
    )
    async def get_questionnaire(
        self,
        request: Request[Any, Any, Any],
        instrument_id: FromPath[str],
        version: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        return _conditional(request, _instrument_json(instrument_id, version), "application/json")


class FhirQuestionnaireController(Controller):
    path = "/fhir/Questionnaire"
    tags = ["fhir"]  # noqa: RUF012
    opt = {"public": True}  # noqa: RUF012

    @get(
        "/{instrument_id:str}",
        summary="A questionnaire as a FHIR R4 Questionnaire resource",
        responses={
            200: ResponseSpec(
                dict[str, Any], description="FHIR R4 Questionnaire", media_type=FHIR_JSON
            )
        },
    )
    async def read(
        self,
        request: Request[Any, Any, Any],
        instrument_id: FromPath[str],
        version: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        return _conditional(request, _instrument_fhir(instrument_id, version), FHIR_JSON)
