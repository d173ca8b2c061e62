"""Submission and reading of questionnaire responses (the unit of work; never commits).

The server scores the answers itself and decides whether they are a safety signal; the app only
displays what comes back. Answers and score are encrypted under the patient's data key before
they reach the database. A retried submission (same idempotency key) returns the first result
and stores nothing; the same key with *different* answers is a conflict, not a silent overwrite.
"""

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgspec
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit_service
from backend.audit.service import AuditEvent
from backend.db.direct import outside_transaction
from backend.domain.alerts.candidate import PatientAction
from backend.domain.alerts.clinic_settings import parameters_from_override
from backend.domain.alerts.evaluation import act_on_plan, plan_evaluation
from backend.domain.alerts.history import B12_RISK_INSTRUMENT, NOT_READ, SubmittedResponse
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.sources import CourseParts, CourseRef, PriorResponses
from backend.domain.check_ins.linking import link_response
from backend.domain.responses import repository
from backend.domain.responses.schemas import (
    ResponsePage,
    ResponseRecord,
    ResponseSubmission,
    ScorePoint,
    ScoreSeries,
    ScoreSummary,
    SubmissionResult,
)
from backend.domain.safety.crisis import CrisisScreen
from backend.domain.safety.screen import crisis_screen_for_submission
from backend.identity.errors import SessionEnded
from backend.keyring.service import Keyring, OwnerKeys
from backend.lib.errors import Conflict, Forbidden, InvalidInput, NotFound
from backend.lib.ids import uuid7
from questionnaires.answers import Answer, Submission
from questionnaires.errors import AnswerProblem, AnswerValidationError
from questionnaires.registry import catalogue
from questionnaires.scoring import Score

TABLE_NAME = "questionnaire_responses"
# Phones' clocks drift; an authored time this far in the future is an error, not skew.
MAX_CLOCK_SKEW = timedelta(minutes=5)

_answers_type = tuple[Answer, ...]
_encode = msgspec.msgpack.Encoder().encode


class PatientRef(msgspec.Struct, frozen=True, kw_only=True):
    """Who is submitting or being read, as the auth layer established it."""

    patient_id: uuid.UUID
    clinic_id: uuid.UUID
    locale: str | None = None
    clinic_contact: str | None = None
    # The patient row as the caller read it in this transaction (status and care team), so the
    # alert evaluation need not read it again; None = not read, evaluation reads it.
    status: str | None = None
    care_team_id: uuid.UUID | None = None


class Prefetched(NamedTuple):
    """What the caller read with the patient row (`repository.submission_context`), in this
    transaction, so the submission and its alert evaluation need not read it again."""

    keys: OwnerKeys
    """The patient's keys, encrypting under the active version."""
    parameters: AlertParameters
    """The clinic's alert parameters in force."""
    course: CourseRef | None
    """The patient's current treatment course."""
    parts: CourseParts | None
    """That course's sessions, baselines and unanswered check-ins due by the submission's
    ``now`` (None without a course)."""
    prior: PriorResponses
    """The latest stored answers the alert rules read around the submission."""


class _Routing(NamedTuple):
    clinic_id: uuid.UUID
    care_team_id: uuid.UUID | None
    status: str


async def submitting_patient(
    session: AsyncSession,
    keyring: Keyring,
    patient_id: uuid.UUID,
    *,
    clinic_id: uuid.UUID | None,
    now: datetime,
    instrument_id: str,
    session_id: uuid.UUID | None,
) -> tuple[PatientRef, Prefetched]:
    """The submitting patient and what their submission (to ``instrument_id``) reads before it
    writes, in one statement (`repository.submission_context`). SessionEnded when the caller's
    session ``session_id`` (their token's refresh-token family) was revoked since the token was
    issued; None only for callers in this process that hold no token (tests, benches). NotFound
    for no such patient in ``clinic_id``, Forbidden when their monitoring is not active
    (withdrawn or erased)."""
    connection = await session.connection()
    # Before the key rows are read (`Keyring.owner_keys`): a shred in between stays uncached.
    generation = keyring.generation
    with outside_transaction():  # a read: no BEGIN for it (`submit_response`)
        context = await repository.submission_context(
            connection,
            patient_id,
            now,
            instrument_id=instrument_id,
            b12_instrument_id=B12_RISK_INSTRUMENT,
            session_id=session_id,
        )
    if context is not None and session_id is not None and not context.session_live:
        raise SessionEnded
    if context is None or context.clinic_id != clinic_id:
        raise NotFound("no such patient")
    if context.status != "active":
        raise Forbidden("this patient's monitoring is not active; answers are not accepted")
    patient = PatientRef(
        patient_id=patient_id,
        clinic_id=context.clinic_id,
        locale=context.locale,
        status=context.status,
        care_team_id=context.care_team_id,
    )
    prefetched = Prefetched(
        keys=keyring.keys_from_rows(
            patient_id, context.key_rows, generation=generation, active_only=True
        ),
        parameters=parameters_from_override(context.override_document),
        course=context.course,
        parts=context.parts,
        prior=context.prior,
    )
    return patient, prefetched


def _band_label(score: Score) -> str | None:
    if score.band is None:
        return None
    instrument = catalogue().get(score.instrument_id, score.instrument_version)
    return next((band.label for band in instrument.bands if band.code == score.band), None)


def _summary(score: Score) -> ScoreSummary:
    return ScoreSummary(
        instrument_id=score.instrument_id,
        instrument_version=score.instrument_version,
        scorer_version=score.scorer_version,
        total=score.total,
        band=score.band,
        band_label=_band_label(score),
        prorated=score.prorated,
        missing_items=score.missing_items,
    )


def _result(
    *,
    patient: PatientRef,
    score: Score,
    response_id: uuid.UUID,
    authored_at: datetime,
    received_at: datetime,
    late: bool,
    replayed: bool,
    safety: CrisisScreen | None,
    patient_actions: tuple[PatientAction, ...] = (),
) -> SubmissionResult:
    return SubmissionResult(
        safety=safety,
        reask_items=score.unanswered_safety_items,
        response_id=response_id,
        authored_at=authored_at,
        received_at=received_at,
        late=late,
        score=_summary(score),
        replayed=replayed,
        patient_actions=patient_actions,
    )


def _canonical_answers(answers: tuple[Answer, ...]) -> bytes:
    return _encode(sorted(answers, key=lambda a: a.link_id))


async def submit_response(
    session: AsyncSession,
    keyring: Keyring,
    *,
    patient: PatientRef,
    submission: ResponseSubmission,
    idempotency_key: str | None,
    now: datetime,
    source: str = "app",
    prefetched: Prefetched | None = None,
    audit: AuditEvent | None = None,
    whole_unit_of_work: bool = False,
) -> SubmissionResult:
    """Validate, score, encrypt and store one submission, exactly once per idempotency key.

    ``audit``: the event recording it (its ``resource_id`` is set to the new response's id),
    stored with the response and only if the response is (not for a replay).

    ``whole_unit_of_work``: the caller writes nothing else and commits right after (the HTTP
    route). Then, on PostgreSQL, a submission that raises no alert and opened no transaction
    stores its response and audit event at once, as one atomic statement: no BEGIN and COMMIT
    round trips. Otherwise everything waits for the caller's commit, as for any service.

    Raises AnswerValidationError (422, naming items) when answers do not fit the instrument,
    InvalidInput for an impossible authored time or a clinician-only instrument, Conflict when
    the key was already used for different answers.
    """
    score = catalogue().score(
        Submission(
            instrument_id=submission.instrument_id,
            instrument_version=submission.instrument_version,
            answers=submission.answers,
        )
    )
    instrument = catalogue().get(score.instrument_id, score.instrument_version)
    if source != "clinician" and instrument.respondent != "patient":
        raise AnswerValidationError([AnswerProblem(code="wrong_instrument")])
    authored_at = submission.authored or now
    if authored_at.tzinfo is None:
        raise InvalidInput("authored must carry a time zone offset (RFC 3339)")
    authored_at = authored_at.astimezone(UTC)
    if authored_at - now > MAX_CLOCK_SKEW:
        raise InvalidInput("authored lies in the future")

    key = idempotency_key or (
        str(submission.response_id) if submission.response_id else str(uuid7())
    )
    response_id = uuid7()
    late = False
    if submission.check_in_id is not None:
        # Refuses another patient's check-in, a closed one, or an instrument it did not ask.
        link = await link_response(
            session,
            patient_id=patient.patient_id,
            check_in_id=submission.check_in_id,
            instrument_id=score.instrument_id,
            authored_at=authored_at,
            now=now,
            response_id=response_id,
        )
        late = link.late
    connection = await session.connection()
    keys = (
        prefetched.keys
        if prefetched is not None
        else await keyring.owner_keys(session, patient.patient_id, active_only=True)
    )
    row_id = str(response_id)
    row = repository.NewResponse(
        id=response_id,
        clinic_id=patient.clinic_id,
        patient_id=patient.patient_id,
        check_in_id=submission.check_in_id,
        idempotency_key=key,
        instrument_id=score.instrument_id,
        instrument_version=score.instrument_version,
        trajectory_key=score.trajectory_key,
        scorer_version=score.scorer_version,
        source=source,
        authored_at=authored_at,
        received_at=now,
        # Authored inside the check-in's window but received after it closed (issue 6).
        late=late,
        answers_ct=keys.encrypt(
            table=TABLE_NAME,
            column="answers_ct",
            row_id=row_id,
            plaintext=_canonical_answers(submission.answers),
        ),
        score_ct=keys.encrypt(
            table=TABLE_NAME, column="score_ct", row_id=row_id, plaintext=_encode(score)
        ),
    )
    # The clinic's crisis screen for this patient's locale when the answers are a §5.3 trigger.
    safety = await crisis_screen_for_submission(
        session,
        clinic_id=patient.clinic_id,
        locale=patient.locale,
        clinic_contact=patient.clinic_contact,
        score=score,
        answers=submission.answers,
        now=now,
        parameters=None if prefetched is None else prefetched.parameters,
    )
    audit_row = (
        None
        if audit is None
        else audit_service.audit_row(msgspec.structs.replace(audit, resource_id=row_id))
    )
    # The rules run before the response is stored, reading only; what they find new is stored
    # and acted on below in the transaction that stores the response, so the alert a safety
    # answer raises commits with the answer or not at all (DESIGN §7).
    with outside_transaction():
        plan = await plan_evaluation(
            session,
            keyring,
            patient_id=patient.patient_id,
            clinic_id=patient.clinic_id,
            now=now,
            routing=(
                _Routing(patient.clinic_id, patient.care_team_id, patient.status)
                if patient.status is not None
                else None
            ),
            keys=keys,
            parameters=None if prefetched is None else prefetched.parameters,
            course=NOT_READ if prefetched is None else prefetched.course,
            # Linking just changed a check-in of the course, which the prefetched parts hold
            # as it was: read them again, after the change.
            parts=(
                NOT_READ
                if prefetched is None or submission.check_in_id is not None
                else prefetched.parts
            ),
            submitted=SubmittedResponse(
                id=response_id, authored=authored_at, score=score, answers=submission.answers
            ),
            prior=None if prefetched is None else prefetched.prior,
        )
    if whole_unit_of_work and not plan.new:
        # Nothing else to write: on PostgreSQL the response and its audit event are one atomic
        # statement, run without BEGIN and COMMIT round trips unless a transaction is open.
        with outside_transaction():
            inserted = await repository.insert_unless_duplicate(connection, row, audit_row)
    else:
        inserted = await repository.insert_unless_duplicate(connection, row, audit_row)
    if inserted:
        # A replay (below) returns the stored result and acts on nothing again.
        notices = await act_on_plan(
            session,
            keyring,
            plan,
            patient_id=patient.patient_id,
            clinic_id=patient.clinic_id,
            now=now,
        )
        return _result(
            patient=patient,
            score=score,
            response_id=response_id,
            authored_at=authored_at,
            received_at=now,
            late=row.late,
            replayed=False,
            safety=safety,
            patient_actions=tuple(dict.fromkeys(n.action for n in notices)),
        )

    existing = await repository.by_idempotency_key(connection, patient.patient_id, key)
    if existing is None:  # pragma: no cover - the conflicting row cannot vanish in this transaction
        raise Conflict("the submission could not be stored; retry")
    # `keys` decrypts under every live version, not only the active one it encrypts under.
    stored_answers = _decrypt(keys, existing.id, "answers_ct", existing.answers_ct)
    if stored_answers != _canonical_answers(submission.answers):
        raise Conflict(
            "this idempotency key was already used for a different submission; "
            "use a new key for new answers"
        )
    stored_score = _decode_score(keys, existing.id, existing.score_ct)
    return _result(
        patient=patient,
        score=stored_score,
        response_id=existing.id,
        authored_at=existing.authored_at,
        received_at=existing.received_at,
        late=existing.late,
        replayed=True,
        safety=safety,
    )


def _decrypt(keys: OwnerKeys, row_id: uuid.UUID, column: str, blob: bytes) -> bytes:
    return keys.decrypt(table=TABLE_NAME, column=column, row_id=str(row_id), blob=bytes(blob))


def _decode_score(keys: OwnerKeys, row_id: uuid.UUID, blob: bytes) -> Score:
    return msgspec.msgpack.decode(_decrypt(keys, row_id, "score_ct", blob), type=Score)


def _cursor(authored_at: datetime, row_id: uuid.UUID) -> str:
    raw = _encode((authored_at.isoformat(), str(row_id)))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        authored, row_id = msgspec.msgpack.decode(
            base64.urlsafe_b64decode(padded), type=tuple[str, str]
        )
        return datetime.fromisoformat(authored), uuid.UUID(row_id)
    except (ValueError, msgspec.DecodeError):
        raise InvalidInput("cursor is not one this service issued") from None


async def list_responses(
    session: AsyncSession,
    keyring: Keyring,
    patient_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
    trajectory_key: str | None = None,
) -> ResponsePage:
    """One page of a patient's responses, newest first, decrypted (callers are authorised)."""
    connection = await session.connection()
    rows = await repository.page_for_patient(
        connection,
        patient_id,
        after=_parse_cursor(cursor) if cursor else None,
        limit=limit + 1,
        trajectory_key=trajectory_key,
    )
    keys = await keyring.owner_keys(session, patient_id)
    items = [
        ResponseRecord(
            response_id=row.id,
            instrument_id=row.instrument_id,
            instrument_version=row.instrument_version,
            trajectory_key=row.trajectory_key,
            check_in_id=row.check_in_id,
            source=row.source,
            authored_at=row.authored_at,
            received_at=row.received_at,
            late=row.late,
            answers=msgspec.msgpack.decode(
                _decrypt(keys, row.id, "answers_ct", row.answers_ct), type=_answers_type
            ),
            score=_summary(_decode_score(keys, row.id, row.score_ct)),
        )
        for row in rows[:limit]
    ]
    next_cursor = (
        _cursor(rows[limit - 1].authored_at, rows[limit - 1].id) if len(rows) > limit else None
    )
    return ResponsePage(items=items, next_cursor=next_cursor)


async def score_series(
    session: AsyncSession, keyring: Keyring, patient_id: uuid.UUID, trajectory_key: str
) -> ScoreSeries:
    """A patient's scores on one trajectory, oldest first (for plots and the alert engine)."""
    connection = await session.connection()
    rows = await repository.series_for_patient(connection, patient_id, trajectory_key)
    keys = await keyring.owner_keys(session, patient_id)
    points = []
    for row in rows:
        score = _decode_score(keys, row.id, row.score_ct)
        points.append(
            ScorePoint(
                response_id=row.id,
                authored_at=row.authored_at,
                total=score.total,
                band=score.band,
                prorated=score.prorated,
                missing_items=score.missing_items,
                instrument_version=row.instrument_version,
            )
        )
    return ScoreSeries(trajectory_key=trajectory_key, points=points)
