"""A patient's `PatientTimeline`, assembled from the database for the pure rules.

Responses are decrypted with one key read (`Keyring.owner_keys`) and re-read as the rules see
them (`timeline.scored_response`: free text dropped). Sessions, course baselines and unanswered
check-ins come from the patient's current treatment course.

Re-asks: the submission API carries no "this is a re-ask" marker, so a response counts as the
re-ask of an earlier one when it is the next response to the same instrument, within the re-ask
wait, after a response that left a suicide item blank (clinical-spec §5.3 rule 5: re-ask once).
"""

import enum
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts import sources
from backend.domain.alerts.engine import reads_answers
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.rows import AnyRow
from backend.domain.alerts.timeline import (
    CourseBaseline,
    InstrumentReading,
    MissedCheckIn,
    Modality,
    PatientTimeline,
    ScoredResponse,
    TreatmentSession,
    instrument_reading,
    read_scored,
)
from backend.keyring.service import Keyring, OwnerKeys
from questionnaires.answers import Answer
from questionnaires.registry import catalogue
from questionnaires.scoring import Score

B12_RISK_INSTRUMENT: Final = "b12-risk"
_RESPONSES_TABLE: Final = "questionnaire_responses"
_MODALITY: Final[dict[str, Modality]] = {
    "n2o": "n2o",
    "iv_ketamine": "ketamine_iv",
    "esketamine": "esketamine",
}


class _Decrypted(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    authored: datetime
    score: Score
    answers: dict[str, bool | int | float | str]


AnswersNeeded = Callable[[Score], bool]


_SCORE: Final = msgspec.msgpack.Decoder(Score)
_ANSWERS: Final = msgspec.msgpack.Decoder(tuple[Answer, ...])


def _decrypt(
    keys: OwnerKeys, rows: Sequence[AnyRow], answers_needed: AnswersNeeded
) -> list[_Decrypted]:
    """The rows' scores, and their answers where a rule reads them, opened together: the parts
    of the associated data every row shares are encoded once (`OwnerKeys.decrypt_many`), and a
    field that fails to open raises, naming its row, as `OwnerKeys.decrypt` does."""
    # Decrypted on every read, never kept: a submission reads only its scope (its course), and
    # plaintext answers do not linger in memory between evaluations. The answers only where a
    # rule reads them (`engine.reads_answers`): most of a course is scores, and each field
    # opened is an AES-GCM decryption the submission waits for.
    row_ids = [str(row.id) for row in rows]
    scores = [
        _SCORE.decode(plain)
        for plain in keys.decrypt_many(
            table=_RESPONSES_TABLE,
            column="score_ct",
            row_ids=row_ids,
            blobs=[row.score_ct for row in rows],
        )
    ]
    needed = [index for index, score in enumerate(scores) if answers_needed(score)]
    answers: dict[int, dict[str, bool | int | float | str]] = {}
    if needed:
        opened = keys.decrypt_many(
            table=_RESPONSES_TABLE,
            column="answers_ct",
            row_ids=[row_ids[index] for index in needed],
            blobs=[rows[index].answers_ct for index in needed],
        )
        for index, plain in zip(needed, opened, strict=True):
            answers[index] = {a.link_id: a.value for a in _ANSWERS.decode(plain)}
    return [
        _Decrypted(
            id=row_id,
            authored=row.authored_at,
            score=score,
            answers=answers.get(index, {}),
        )
        for index, (row_id, row, score) in enumerate(zip(row_ids, rows, scores, strict=True))
    ]


def answers_needed_by(parameters: AlertParameters) -> AnswersNeeded:
    """Whether a response's answers are read: by a rule, or as B12 risk factors."""
    needed: dict[tuple[str, str], bool] = {}

    def answers_needed(score: Score) -> bool:
        key = (score.instrument_id, score.instrument_version)
        if key not in needed:
            instrument = catalogue().get(*key)
            needed[key] = instrument.id == B12_RISK_INSTRUMENT or reads_answers(
                instrument, parameters
            )
        return needed[key]

    return answers_needed


def _reasks(responses: list[_Decrypted], wait: timedelta) -> dict[str, str]:
    """Re-ask id -> id of the response whose blank suicide item it re-asked."""
    found: dict[str, str] = {}
    for index, first in enumerate(responses):
        # A re-ask is asked once: a blank re-ask is not re-asked again.
        if not first.score.unanswered_safety_items or first.id in found:
            continue
        instrument = first.score.instrument_id
        following = (r for r in responses[index + 1 :] if r.score.instrument_id == instrument)
        second = next(following, None)
        if second is not None and second.authored - first.authored <= wait:
            found[second.id] = first.id
    return found


def _scored(responses: list[_Decrypted], wait: timedelta) -> list[ScoredResponse]:
    reask_of = _reasks(responses, wait)
    # A course holds many responses to a few instruments: each instrument is read once.
    readings: dict[tuple[str, str], InstrumentReading] = {}
    scored = []
    for response in responses:
        key = (response.score.instrument_id, response.score.instrument_version)
        reading = readings.get(key)
        if reading is None:
            reading = readings[key] = instrument_reading(catalogue().get(*key))
        scored.append(
            read_scored(
                response.score,
                reading,
                response_id=response.id,
                authored=response.authored,
                answers=response.answers,
                reask_of=reask_of.get(response.id),
            )
        )
    return scored


def _b12_risk_factors(responses: list[_Decrypted]) -> tuple[str, ...]:
    """The yes answers of the latest B12 risk questionnaire (clinical-spec §5.1)."""
    latest = [r for r in responses if r.score.instrument_id == B12_RISK_INSTRUMENT]
    if not latest:
        return ()
    answers = latest[-1].answers
    return tuple(sorted(link_id for link_id, value in answers.items() if value is True))


def _session(row: AnyRow) -> TreatmentSession:
    return TreatmentSession(
        id=str(row.id),
        modality=_MODALITY[row.modality],
        start=row.started_at or row.planned_start_at,
        end=row.ended_at or (row.planned_end_at if row.started_at is None else None),
        n2o_concentration_percent=row.n2o_concentration_percent,
        n2o_minutes=row.n2o_minutes,
    )


class NotRead(enum.Enum):
    """A value the caller did not read (as opposed to one it read and found absent: None)."""

    NOT_READ = "not read"


NOT_READ: Final = NotRead.NOT_READ


class SubmittedResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The response a submission is storing, as the caller has it in plain: evaluated before it
    is stored (and, whether stored yet or not, never read back and decrypted again)."""

    id: uuid.UUID
    authored: datetime
    score: Score
    answers: tuple[Answer, ...]

    @property
    def instrument_id(self) -> str:
        return self.score.instrument_id

    def decrypted(self) -> "_Decrypted":
        return _Decrypted(
            id=str(self.id),
            authored=self.authored,
            score=self.score,
            # In the order they are stored (`responses.service._canonical_answers`).
            answers={a.link_id: a.value for a in sorted(self.answers, key=lambda a: a.link_id)},
        )


def course_lookback(parameters: AlertParameters) -> timedelta:
    """How far before a course's first session its rules read: the baseline window B0 and the
    pre-session window B_k of every trajectory (clinical-spec §2.4), and MNSI's 7-day default."""
    days = [7.0]
    for rule in parameters.rebound.values():
        days += [rule.baseline_within_days, rule.pre_session_within_hours / 24]
    return timedelta(days=max(days))


def scope_is_exact(responses: list[_Decrypted], submitted_id: str) -> bool:
    """Whether a timeline scoped to one submission yields the same triggers for it as the
    whole history would.

    The scope holds the course (from `course_lookback` before its first session on), the
    submission, the responses to its instrument just before it, the latest B12 risk answers
    and the course baselines. Rules read other responses only through re-ask pairing (`_reasks`),
    which walks back over blank suicide items: a response counts as a re-ask only after a blank
    one. With no blank response in the scope but the submission's own, every pairing the scope
    sees is the one the whole history has: the submission's predecessor is in the scope, and a
    response that is not blank raises nothing whatever it re-asked. Otherwise the whole history
    is read: rare (skipped suicide items), and never worth an approximation.
    """
    return not any(r.score.unanswered_safety_items for r in responses if r.id != submitted_id)


def response_key(row_id: uuid.UUID | str) -> str:
    """A stored response's id as the rules and its fields' associated data have it: the course's
    rows come with it as text already (`sources.SubmissionScope.since`), others as a uuid."""
    return row_id if type(row_id) is str else str(row_id)


async def _submission_rows(
    connection: AsyncConnection,
    patient_id: uuid.UUID,
    submitted: SubmittedResponse,
    course_since: datetime | None,
    baseline_ids: list[uuid.UUID],
    prior: sources.PriorResponses | None,
) -> list[AnyRow] | None:
    """The stored rows of a submission's scope but the submission itself; None when the whole
    history is needed."""
    scope = await sources.submission_scope(
        connection,
        patient_id,
        instrument_id=submitted.instrument_id,
        b12_instrument_id=B12_RISK_INSTRUMENT,
        response_id=submitted.id,
        since=course_since,
        prior=prior,
    )
    previous = scope.previous
    if previous is not None and (previous.authored_at, previous.id) > (
        submitted.authored,
        submitted.id,
    ):
        return None  # a late arrival can change the pairing of later responses: read them all
    rows: dict[str, AnyRow] = {response_key(r.id): r for r in scope.since}
    rows.pop(str(submitted.id), None)
    # The answer just before it is enough: if it left a safety item blank, `scope_is_exact`
    # sends us to the whole history anyway; if not, no re-ask chain reaches past it.
    if previous is not None:
        rows.setdefault(response_key(previous.id), previous)
    # The latest B12 risk answers (the submission's own, if it is one, are already in hand).
    if scope.latest_b12 is not None:
        rows.setdefault(response_key(scope.latest_b12.id), scope.latest_b12)
    missing = [i for i in baseline_ids if str(i) not in rows and i != submitted.id]
    if missing:
        for row in await sources.responses_by_id(connection, patient_id, missing):
            rows.setdefault(response_key(row.id), row)
    return list(rows.values())


async def patient_timeline(
    session: AsyncSession,
    keyring: Keyring,
    patient_id: uuid.UUID,
    parameters: AlertParameters,
    *,
    now: datetime,
    keys: OwnerKeys | None = None,
    submitted: SubmittedResponse | None = None,
    course: sources.CourseRef | NotRead | None = NOT_READ,
    parts: sources.CourseParts | NotRead | None = NOT_READ,
    prior: sources.PriorResponses | None = None,
) -> PatientTimeline:
    """``keys``, ``course``, ``parts``: the patient's keys, current course and its parts
    (`sources.course_parts` as of ``now``) if the caller already read them in this transaction;
    ``prior``: the latest answers around ``submitted`` (`sources.submission_scope`), likewise.

    ``submitted``: evaluating right after that submission. Its triggers, the course's and the
    re-ask pairing around it are exactly those of the whole history (`scope_is_exact`), without
    reading the whole history: a patient's submission costs what their course holds, not what
    they have ever answered. Triggers that come with the passing of time for older responses
    are the timer's, which reads the whole history.
    """
    connection = await session.connection()
    sessions: tuple[TreatmentSession, ...] = ()
    baseline_rows: list[AnyRow] = []
    missed: tuple[MissedCheckIn, ...] = ()
    if isinstance(course, NotRead):
        course = await sources.current_course(connection, patient_id)
    if course is not None:
        if isinstance(parts, NotRead) or parts is None:
            parts = await sources.course_parts(connection, course.id, now)
        sessions = tuple(_session(s) for s in parts.sessions)
        baseline_rows = parts.baselines
        missed = tuple(
            MissedCheckIn(id=str(c.id), due=c.due_at, session_id=str(c.session_id))
            for c in parts.unanswered
        )

    rows: list[AnyRow] | None = None
    if submitted is not None:
        course_since = None
        if sessions:
            first = min(s.start for s in sessions)
            course_since = first - course_lookback(parameters)
        rows = await _submission_rows(
            connection,
            patient_id,
            submitted,
            course_since,
            [b.response_id for b in baseline_rows],
            prior,
        )

    answers_needed = answers_needed_by(parameters)

    async def decrypted_rows(rows: list[AnyRow]) -> list[_Decrypted]:
        nonlocal keys
        if rows and keys is None:
            keys = await keyring.owner_keys(session, patient_id)
        if keys is None:
            return []
        return _decrypt(keys, rows, answers_needed)

    decrypted: list[_Decrypted] | None = None
    if rows is not None and submitted is not None:
        decrypted = await decrypted_rows(rows)
        decrypted.append(submitted.decrypted())
        decrypted.sort(key=lambda r: (r.authored, r.id))
        if not scope_is_exact(decrypted, str(submitted.id)):
            decrypted = None
    if decrypted is None:
        decrypted = await decrypted_rows(await sources.responses_of(connection, patient_id))
        # A submission is evaluated before its response is stored (`evaluation.plan_evaluation`).
        if submitted is not None and all(r.id != str(submitted.id) for r in decrypted):
            decrypted.append(submitted.decrypted())
            decrypted.sort(key=lambda r: (r.authored, r.id))
    wait = timedelta(minutes=parameters.suicidality.reask_wait_minutes)
    responses = _scored(decrypted, wait)

    baselines: list[CourseBaseline] = []
    by_id = {r.id: r for r in responses}
    for baseline in baseline_rows:
        response = by_id.get(str(baseline.response_id))
        if response is not None and response.total is not None:
            baselines.append(
                CourseBaseline(
                    trajectory_key=response.trajectory_key,
                    response_id=response.id,
                    total=response.total,
                    authored=response.authored,
                    partial=response.partial,
                )
            )
    return PatientTimeline(
        patient_id=str(patient_id),
        sessions=sessions,
        responses=tuple(responses),
        baselines=tuple(baselines),
        missed_check_ins=missed,
        b12_risk_factors=_b12_risk_factors(decrypted),
    )
