"""Course baselines (B0, clinical-spec §2.4): the score rebound and neuropathy rules compare with.

B0 of a course for one trajectory is, as the alert engine reads it (`alerts.history` and
`alerts.timeline.course_baseline`):
1. the response a clinician recorded as the course's baseline for that instrument
   (``course_baselines``: a reference to the encrypted response, never a copy of the score);
2. else the patient's last complete score within ``baselineWithinDays`` (7 by default) before the
   course's first session. The baseline questionnaires the protocol asks before session 1
   (§4.2 "Before first session (<= 7 d)") are therefore B0 as soon as the patient answers them
   in the app; nobody has to record them.

A clinician records B0 by naming a stored response (answered in the app, or entered earlier), or
by entering the answers of a questionnaire completed in clinic, which is scored, encrypted and
checked for safety items like any submission (source ``clinician``). Either way B0 must be a
complete score (every scored item answered, so neither prorated nor partially missing) of an
instrument the rules compare with a baseline, answered before the course's first session. The
rules are re-run in the same transaction, so an alert that the new B0 implies is raised with it.

Two clinicians may each decide a course's B0 from the baselines they read: recording and
forgetting take the course's row lock and accept the entity tag of the course's baselines (what
`course_baselines` shows, ``If-Match``), so a choice made from a stale page is refused (412), not
saved over the other one. One tag covers the whole course: the rules read its baselines together,
and a derived B0 changes when the patient answers again before the first session.

The rule itself is pure (`derive_baselines`, from decrypted scores); `baselines_of_scores` lets a
caller that has already decrypted the scores and read the clinic's parameters (the patient page)
use them rather than read and decrypt them again.
"""

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
from sqlalchemy import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.questionnaire_response import QuestionnaireResponse
from backend.db.models.treatment import CourseBaseline, TreatmentCourse
from backend.db.upsert import dialect_insert
from backend.domain.alerts.clinic_settings import parameters_for_clinic
from backend.domain.alerts.evaluation import evaluate_patient
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.timeline import CourseBaseline as CourseBaselineMark
from backend.domain.alerts.timeline import PatientTimeline, ScoredResponse, course_baseline
from backend.domain.alerts.timeline import TreatmentSession as TimelineSession
from backend.domain.responses.schemas import ResponseSubmission
from backend.domain.responses.service import PatientRef, submit_response
from backend.domain.sessions import service
from backend.domain.sessions.schemas import BaselineInput, BaselineView, CourseBaselines
from backend.keyring.service import Keyring, OwnerKeys
from backend.lib.errors import Conflict, FieldProblem, InvalidInput, NotFound
from backend.lib.preconditions import lock_row, require_current
from questionnaires.answers import Submission
from questionnaires.errors import UnknownInstrumentError
from questionnaires.model import Instrument
from questionnaires.registry import catalogue
from questionnaires.scoring import Score

BASELINES: Final = CourseBaseline.__table__  # type: ignore[attr-defined]
COURSES: Final = TreatmentCourse.__table__  # type: ignore[attr-defined]
RESPONSES: Final = QuestionnaireResponse.__table__  # type: ignore[attr-defined]
_RESPONSES_TABLE: Final = "questionnaire_responses"
DEFAULT_WITHIN_DAYS: Final = 7.0
"""clinical-spec §2.4: B0 = last complete score within 7 days before the first session. Only a
fallback: each compared trajectory takes its window from its rule's parameters (`within_days`)."""
# Phones' and clinics' clocks drift; an authored time this far ahead is an error, not skew.
_MAX_SKEW: Final = timedelta(minutes=5)


def compared_trajectories(parameters: AlertParameters) -> frozenset[str]:
    """Trajectories some alert rule compares with a course baseline: the rebound rule's
    instruments and the MNSI-Q rise of the N2O neuropathy rule (§2.4, §5.1)."""
    return frozenset({*parameters.rebound, parameters.n2o_neuro.mnsi_trajectory})


def within_days(parameters: AlertParameters, trajectory_key: str) -> float:
    # The same window as the rule that compares the trajectory, so both derive one B0.
    if trajectory_key == parameters.n2o_neuro.mnsi_trajectory:
        return parameters.n2o_neuro.mnsi_baseline_within_days
    rule = parameters.rebound.get(trajectory_key)
    return DEFAULT_WITHIN_DAYS if rule is None else rule.baseline_within_days


def _problem(pointer: str, code: str, message: str) -> InvalidInput:
    return InvalidInput(message, errors=[FieldProblem(pointer=pointer, code=code, message=message)])


def _instrument(instrument_id: str, version: str | None, parameters: AlertParameters) -> Instrument:
    try:
        instrument = catalogue().get(instrument_id, version)
    except UnknownInstrumentError:
        raise _problem("/instrument_id", "unknown_instrument", "no such instrument") from None
    if instrument.trajectory_key not in compared_trajectories(parameters):
        raise _problem(
            "/instrument_id",
            "wrong_instrument",
            f"{instrument_id} is not compared with a course baseline by any alert rule",
        )
    return instrument


def _check_score(score: Score, pointer: str) -> None:
    if score.total is None or score.prorated:
        raise _problem(
            pointer,
            "incomplete_score",
            "a baseline needs a complete score (every scored item answered, not prorated)",
        )
    # A domain-maxima total (QIDS-SR16, §1.4) is scored from a domain's answered items and is
    # not prorated; with an item missing it is still partial, and never B0 (§2.4).
    if score.missing_items:
        raise _problem(
            pointer,
            "incomplete_score",
            "a baseline needs a complete score (every scored item answered); unanswered: "
            + ", ".join(score.missing_items),
        )


def _check_authored(authored: datetime, first_session: datetime | None, now: datetime) -> None:
    if authored.tzinfo is None:
        raise _problem("/authored", "naive_time", "authored must carry a time zone offset")
    if authored - now > _MAX_SKEW:
        raise _problem("/authored", "in_the_future", "authored lies in the future")
    if first_session is not None and authored >= first_session:
        raise _problem(
            "/authored",
            "after_first_session",
            "a baseline is answered before the course's first session",
        )


async def _first_session_start(session: AsyncSession, course: TreatmentCourse) -> datetime | None:
    live = [s for s in await service.course_sessions(session, course.id) if s.status != "cancelled"]
    return service.effective_start(live[0]) if live else None


async def _open_course(
    session: AsyncSession,
    keyring: Keyring,
    patient_id: uuid.UUID,
    course_id: uuid.UUID,
    if_match: frozenset[str] | None,
) -> TreatmentCourse:
    """The course whose B0 is about to change, held (PostgreSQL: its row locked) until the
    transaction ends; PreconditionFailed if ``if_match`` no longer names its baselines."""
    await service.get_patient(session, patient_id)
    course = await service.get_course(session, patient_id, course_id)
    await lock_row(session, COURSES, course.id)
    if if_match is not None:
        current = await _baselines_of(session, keyring, patient_id, course)
        require_current(if_match, current, "the course's baselines")
    if course.status == "ended":
        raise Conflict("the course has ended; its baseline is kept as it was")
    return course


def _decrypt_score(keys: OwnerKeys, response_id: uuid.UUID, blob: bytes) -> Score:
    plaintext = keys.decrypt(
        table=_RESPONSES_TABLE, column="score_ct", row_id=str(response_id), blob=bytes(blob)
    )
    return msgspec.msgpack.decode(plaintext, type=Score)


async def record_baseline(
    session: AsyncSession,
    keyring: Keyring,
    *,
    patient_id: uuid.UUID,
    course_id: uuid.UUID,
    instrument_id: str,
    data: BaselineInput,
    staff_id: uuid.UUID | None,
    idempotency_key: str | None,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> BaselineView:
    """Make a response the course's B0 for `instrument_id` (replacing an earlier choice).
    PreconditionFailed if ``if_match`` no longer names the course's baselines."""
    course = await _open_course(session, keyring, patient_id, course_id, if_match)
    parameters = await parameters_for_clinic(session, course.clinic_id)
    if (data.response_id is None) == (data.answers is None):
        raise InvalidInput("give either response_id (a stored response) or answers (new ones)")
    first_session = await _first_session_start(session, course)
    if data.response_id is not None:
        if data.instrument_version is not None or data.authored is not None:
            raise InvalidInput("a stored response brings its own version and time")
        response_id, score, authored = await _stored_response(
            session, keyring, patient_id, data.response_id
        )
        if score.instrument_id != instrument_id:
            raise _problem(
                "/response_id", "wrong_instrument", f"the response is not a {instrument_id}"
            )
        _instrument(instrument_id, score.instrument_version, parameters)
        _check_score(score, "/response_id")
        _check_authored(authored, first_session, now)
    else:
        assert data.answers is not None
        instrument = _instrument(instrument_id, data.instrument_version, parameters)
        authored = data.authored or now
        _check_authored(authored, first_session, now)
        # Scored first, so an incomplete form is refused before anything is stored.
        _check_score(
            catalogue().score(
                Submission(
                    instrument_id=instrument.id,
                    instrument_version=instrument.version,
                    answers=data.answers,
                )
            ),
            "/answers",
        )
        result = await submit_response(
            session,
            keyring,
            patient=PatientRef(patient_id=patient_id, clinic_id=course.clinic_id),
            submission=ResponseSubmission(
                instrument_id=instrument.id,
                instrument_version=instrument.version,
                answers=data.answers,
                authored=authored,
            ),
            idempotency_key=idempotency_key,
            now=now,
            source="clinician",
        )
        response_id, authored = result.response_id, result.authored_at
        score = await _stored_score(session, keyring, patient_id, response_id)
    values = {
        "response_id": response_id,
        "patient_id": patient_id,
        "recorded_at": now,
        "recorded_by": staff_id,
    }
    connection = await session.connection()
    insert = dialect_insert(connection)
    await connection.execute(
        insert(BASELINES)
        .values(course_id=course.id, instrument_id=instrument_id, **values)
        .on_conflict_do_update(index_elements=["course_id", "instrument_id"], set_=values)
    )
    # The new B0 may imply (or no longer imply) a rebound: the rules run in this transaction.
    await evaluate_patient(
        session, keyring, patient_id=patient_id, clinic_id=course.clinic_id, now=now
    )
    assert score.total is not None  # _check_score
    return BaselineView(
        instrument_id=instrument_id,
        trajectory_key=score.trajectory_key,
        source="recorded",
        response_id=response_id,
        instrument_version=score.instrument_version,
        total=score.total,
        authored_at=authored.astimezone(UTC),
        recorded_at=now,
        recorded_by=staff_id,
    )


async def _stored_response(
    session: AsyncSession, keyring: Keyring, patient_id: uuid.UUID, response_id: uuid.UUID
) -> tuple[uuid.UUID, Score, datetime]:
    r = RESPONSES.c
    connection = await session.connection()
    row = (
        await connection.execute(
            select(r.id, r.authored_at, r.score_ct).where(
                r.id == response_id, r.patient_id == patient_id
            )
        )
    ).first()
    if row is None:
        raise NotFound("no such response for this patient")
    keys = await keyring.owner_keys(session, patient_id)
    return row.id, _decrypt_score(keys, row.id, row.score_ct), row.authored_at


async def _stored_score(
    session: AsyncSession, keyring: Keyring, patient_id: uuid.UUID, response_id: uuid.UUID
) -> Score:
    _, score, _ = await _stored_response(session, keyring, patient_id, response_id)
    return score


async def remove_baseline(
    session: AsyncSession,
    keyring: Keyring,
    *,
    patient_id: uuid.UUID,
    course_id: uuid.UUID,
    instrument_id: str,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> bool:
    """Forget the recorded B0 (the rules fall back to the derived one); whether there was one.
    PreconditionFailed if ``if_match`` no longer names the course's baselines."""
    course = await _open_course(session, keyring, patient_id, course_id, if_match)
    b = BASELINES.c
    connection = await session.connection()
    result = await connection.execute(
        delete(BASELINES)
        .where(b.course_id == course.id, b.instrument_id == instrument_id)
        .returning(b.instrument_id)
    )
    if result.first() is None:
        return False
    await evaluate_patient(
        session, keyring, patient_id=patient_id, clinic_id=course.clinic_id, now=now
    )
    return True


async def course_baselines(
    session: AsyncSession, keyring: Keyring, *, patient_id: uuid.UUID, course_id: uuid.UUID
) -> CourseBaselines:
    """B0 of every trajectory the rules compare with a baseline, as the alert engine reads it:
    recorded ones, else derived from the patient's answers before the first session."""
    await service.get_patient(session, patient_id)
    course = await service.get_course(session, patient_id, course_id)
    return await _baselines_of(session, keyring, patient_id, course)


async def _baselines_of(
    session: AsyncSession, keyring: Keyring, patient_id: uuid.UUID, course: TreatmentCourse
) -> CourseBaselines:
    parameters = await parameters_for_clinic(session, course.clinic_id)
    connection = await session.connection()
    r = RESPONSES.c
    rows = (
        await connection.execute(
            select(r.id, r.authored_at, r.score_ct)
            .where(r.patient_id == patient_id)
            .order_by(r.authored_at, r.id)
        )
    ).all()
    responses: tuple[ScoredResponse, ...] = ()
    if rows:
        keys = await keyring.owner_keys(session, patient_id)
        responses = tuple(
            _scored(str(row.id), _decrypt_score(keys, row.id, row.score_ct), row.authored_at)
            for row in rows
        )
    return await baselines_of_scores(session, course, parameters, responses)


def _scored(response_id: str, score: Score, authored: datetime) -> ScoredResponse:
    return ScoredResponse(
        id=response_id,
        instrument_id=score.instrument_id,
        instrument_version=score.instrument_version,
        trajectory_key=score.trajectory_key,
        recall_hours=None,
        authored=authored,
        total=score.total,
        prorated=score.prorated,
        partial=bool(score.missing_items),
    )


async def baselines_of_scores(
    session: AsyncSession,
    course: TreatmentCourse,
    parameters: AlertParameters,
    responses: Sequence[ScoredResponse],
) -> CourseBaselines:
    """`course_baselines` from scores the caller has already decrypted (the patient page), and
    the clinic's parameters it has already read. B0 of a trajectory is right when ``responses``
    hold all of that trajectory's responses; a trajectory with none in them has no B0 here."""
    first_session = await _first_session_start(session, course)
    connection = await session.connection()
    b = BASELINES.c
    recorded = (
        await connection.execute(
            select(b.response_id, b.recorded_at, b.recorded_by).where(b.course_id == course.id)
        )
    ).all()
    return derive_baselines(
        patient_id=course.patient_id,
        course_id=course.id,
        first_session=first_session,
        parameters=parameters,
        responses=responses,
        recorded={
            row.response_id: RecordedBaseline(
                recorded_at=row.recorded_at, recorded_by=row.recorded_by
            )
            for row in recorded
        },
    )


class RecordedBaseline(msgspec.Struct, frozen=True, kw_only=True):
    """Who recorded a course's B0 and when (the response it names is the key it is found by)."""

    recorded_at: datetime
    recorded_by: uuid.UUID | None


def derive_baselines(
    *,
    patient_id: uuid.UUID,
    course_id: uuid.UUID,
    first_session: datetime | None,
    parameters: AlertParameters,
    responses: Sequence[ScoredResponse],
    recorded: Mapping[uuid.UUID, RecordedBaseline],
) -> CourseBaselines:
    """B0 of each trajectory the rules compare with a baseline (pure): the recorded response,
    else the last complete score within the rule's window before the first session."""
    scored = {r.id: r for r in responses}
    explicit = tuple(_explicit(scored, str(response_id)) for response_id in recorded)
    timeline = PatientTimeline(
        patient_id=str(patient_id),
        sessions=()
        if first_session is None
        else (TimelineSession(id=str(course_id), modality="n2o", start=first_session, end=None),),
        responses=tuple(scored.values()),
        baselines=tuple(e for e in explicit if e is not None),
    )
    views = []
    for key in sorted(compared_trajectories(parameters)):
        b0 = course_baseline(timeline, key, within_days=within_days(parameters, key))
        if b0 is None:
            continue
        response = scored[b0.response_id]
        row = recorded.get(uuid.UUID(b0.response_id))
        views.append(
            BaselineView(
                instrument_id=response.instrument_id,
                trajectory_key=key,
                source="recorded" if row is not None else "derived",
                response_id=uuid.UUID(b0.response_id),
                instrument_version=response.instrument_version,
                total=b0.total,
                authored_at=response.authored,
                recorded_at=None if row is None else row.recorded_at,
                recorded_by=None if row is None else row.recorded_by,
            )
        )
    return CourseBaselines(course_id=course_id, first_session_at=first_session, baselines=views)


def _explicit(scored: Mapping[str, ScoredResponse], response_id: str) -> CourseBaselineMark | None:
    response = scored.get(response_id)
    if response is None or response.total is None:
        return None
    return CourseBaselineMark(
        trajectory_key=response.trajectory_key,
        response_id=response_id,
        total=response.total,
        authored=response.authored,
        partial=response.partial,
    )
