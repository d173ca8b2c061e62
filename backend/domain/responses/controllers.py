"""HTTP for questionnaire responses: the patient app submits; patients and their clinicians read.

Submitting needs a patient token; the patient is the token's subject, never a body field. Reading
a patient's responses is allowed to that patient and to staff of their clinic, and every read of
decrypted answers is audited.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.clinic import Clinic
from backend.db.models.patient import Patient
from backend.deps import provide_runtime, unit_of_work
from backend.domain.responses import service
from backend.domain.responses.schemas import (
    IdempotencyKey,
    ResponsePage,
    ResponseSubmission,
    ScoreSeries,
    SubmissionResult,
)
from backend.identity.access import Scope, access
from backend.identity.audit_trail import audit, audit_event
from backend.identity.errors import SessionEnded
from backend.identity.middleware import refuse_ended_session
from backend.identity.principal import PRINCIPAL_DEPENDENCIES, Principal, provide_principal
from backend.identity.roles import Role
from backend.lib.errors import Gone, InvalidInput, NotFound
from backend.state import Runtime
from questionnaires.errors import AnswerProblem, AnswerValidationError, UnknownInstrumentError
from questionnaires.fhir import parse_questionnaire_response, questionnaire_reference
from questionnaires.registry import catalogue

_patients = Patient.__table__  # type: ignore[attr-defined]
_clinics = Clinic.__table__  # type: ignore[attr-defined]
_IDEMPOTENCY_KEY = msgspec.json.Decoder(IdempotencyKey)


async def _ensure_readable(session: AsyncSession, patient_id: uuid.UUID) -> None:
    """An erased patient's data keys are destroyed: say so (410), don't fail decrypting (500)."""
    connection = await session.connection()
    status = await connection.scalar(select(_patients.c.status).where(_patients.c.id == patient_id))
    if status is None:
        raise NotFound("no such patient")
    if status == "erased":
        raise Gone("this patient's data was erased")


def _idempotency_key(header: str | None) -> str | None:
    if header is None:
        return None
    try:
        return _IDEMPOTENCY_KEY.decode(msgspec.json.encode(header))
    except msgspec.ValidationError:
        raise InvalidInput(
            "Idempotency-Key must be 1-128 visible ASCII characters (a UUID is ideal)"
        ) from None


async def _submit(
    request: Request[Any, Any, Any],
    submission: ResponseSubmission,
    idempotency_key: str | None,
    source: str,
) -> SubmissionResult:
    # The hot path: the runtime, the caller and the unit of work are taken here, one after the
    # other, not as three dependencies (Litestar resolves a batch of them in an anyio task group,
    # three tasks per request).
    runtime = provide_runtime(request.app.state)
    principal = provide_principal(request)
    key = _idempotency_key(idempotency_key)
    try:
        return await _store(runtime, principal, submission, key, source)
    except SessionEnded:
        await refuse_ended_session(runtime, request.scope, principal)


async def _store(
    runtime: Runtime,
    principal: Principal,
    submission: ResponseSubmission,
    key: str | None,
    source: str,
) -> SubmissionResult:
    async with unit_of_work(runtime) as session:
        now = runtime.clock.now()
        patient, prefetched = await service.submitting_patient(
            session,
            runtime.keyring,
            principal.subject_id,
            clinic_id=principal.clinic_id,
            now=now,
            instrument_id=submission.instrument_id,
            # Checked here, in the statement the submission runs anyway (`_PATIENT_SUBMITS`).
            session_id=principal.session_id,
        )
        return await service.submit_response(
            session,
            runtime.keyring,
            patient=patient,
            prefetched=prefetched,
            submission=submission,
            idempotency_key=key,
            now=now,
            source=source,
            whole_unit_of_work=True,  # committed right after; nothing else is written
            # Stored with the response, not for a replay (resource_id: the new response's id).
            audit=audit_event(
                runtime,
                actor=principal,
                action="response.create",
                resource_type="questionnaire_response",
                resource_id=None,
                clinic_id=patient.clinic_id,
                purpose="treatment",
            ),
        )


_PATIENT_SUBMITS = access(Role.PATIENT, scope=Scope.SELF, session_checked_by_handler=True)
_READERS = access(Role.PATIENT, Role.CLINICIAN, Role.CLINIC_ADMIN, scope=Scope.PATIENT)


class ResponseController(Controller):
    path = "/api/v1"
    dependencies = PRINCIPAL_DEPENDENCIES
    tags = ["responses"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @post(
        "/responses",
        opt=_PATIENT_SUBMITS,
        status_code=HTTP_200_OK,
        summary="Submit answers to a questionnaire; returns the score and any safety screen",
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ResponseSubmission],
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False)
        ] = None,
    ) -> SubmissionResult:
        return await _submit(request, data, idempotency_key, "app")

    @get(
        "/patients/{patient_id:uuid}/responses",
        opt=_READERS,
        summary="A patient's responses, newest first (decrypted; every read is audited)",
    )
    async def list_responses(
        self,
        patient_id: FromPath[uuid.UUID],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        trajectory: FromQuery[str | None] = None,
    ) -> ResponsePage:
        await _ensure_readable(db_session, patient_id)
        page = await service.list_responses(
            db_session,
            runtime.keyring,
            patient_id,
            cursor=cursor,
            limit=limit,
            trajectory_key=trajectory,
        )
        await audit(
            db_session,
            runtime,
            actor=principal,
            action="response.read",
            resource_type="patient_responses",
            resource_id=str(patient_id),
            clinic_id=principal.clinic_id,
            purpose="treatment",
        )
        return page

    @get(
        "/patients/{patient_id:uuid}/scores/{trajectory_key:str}",
        opt=_READERS,
        summary="A patient's score series on one trajectory, oldest first",
    )
    async def score_series(
        self,
        patient_id: FromPath[uuid.UUID],
        trajectory_key: FromPath[str],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
        principal: NamedDependency[Principal],
    ) -> ScoreSeries:
        await _ensure_readable(db_session, patient_id)
        series = await service.score_series(db_session, runtime.keyring, patient_id, trajectory_key)
        await audit(
            db_session,
            runtime,
            actor=principal,
            action="score.read",
            resource_type="patient_scores",
            resource_id=str(patient_id),
            clinic_id=principal.clinic_id,
            purpose="treatment",
        )
        return series


class FhirQuestionnaireResponseController(Controller):
    path = "/fhir/QuestionnaireResponse"
    dependencies = PRINCIPAL_DEPENDENCIES
    tags = ["fhir"]  # noqa: RUF012

    @post(
        "/",
        opt=_PATIENT_SUBMITS,
        status_code=HTTP_200_OK,
        summary="Submit a FHIR R4 QuestionnaireResponse (same rules as /api/v1/responses)",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[dict[str, Any]],
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False)
        ] = None,
    ) -> SubmissionResult:
        if data.get("resourceType") != "QuestionnaireResponse":
            raise InvalidInput("resourceType must be QuestionnaireResponse")
        instrument_id, version = questionnaire_reference(data)
        try:
            instrument = catalogue().get(instrument_id, version)
        except UnknownInstrumentError:
            raise AnswerValidationError([AnswerProblem(code="wrong_instrument")]) from None
        parsed = parse_questionnaire_response(data, instrument)
        authored = data.get("authored")
        try:
            authored_at = msgspec.convert(authored, type=datetime | None)
        except msgspec.ValidationError:
            raise InvalidInput("authored must be an RFC 3339 date-time") from None
        submission = ResponseSubmission(
            instrument_id=parsed.instrument_id,
            instrument_version=parsed.instrument_version,
            answers=parsed.answers,
            authored=authored_at,
        )
        return await _submit(request, submission, idempotency_key, "fhir")
