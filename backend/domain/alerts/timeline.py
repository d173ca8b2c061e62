"""A patient's timeline as the alert rules see it: plain data, assembled by the service layer.

Everything here is already decrypted and scored; the rules never touch a database, a key or a
clock. Times are timezone-aware UTC (the patient's time zone matters for scheduling, not for the
rules, which measure intervals). Ids are strings so evidence can point back at stored rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from operator import attrgetter
from typing import Annotated, Final, Literal

import msgspec

from questionnaires.model import Concern, Instrument
from questionnaires.scoring import SafetyFlag, Score

UTCDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
"""Decoding refuses naive datetimes; comparing naive with aware raises, so none slip through."""

Modality = Literal["n2o", "ketamine_iv", "esketamine"]

ItemValue = bool | int | float
"""An answer the rules may read by value. Free text is kept apart, as `FreeText`."""


class FreeText:
    """A patient's free-text answer, held only so the suicidality rule can match the clinic's
    keyword list on the server (clinical-spec §5.3 rule 1). Its repr withholds the text, so a
    timeline in a log line or a traceback shows none of it, and msgspec cannot encode it, so it
    cannot slip into stored evidence."""

    __slots__ = ("link_id", "text")

    def __init__(self, link_id: str, text: str) -> None:
        self.link_id = link_id
        self.text = text

    def __repr__(self) -> str:
        return f"FreeText(link_id={self.link_id!r}, text=<withheld>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FreeText) and (self.link_id, self.text) == (
            other.link_id,
            other.text,
        )

    def __hash__(self) -> int:
        return hash((self.link_id, self.text))


ClinicalEventKind = Literal[
    "hospitalisation_for_depression",
    "hospitalisation_for_suicide_prevention",
    "suicide_attempt",
]
"""Clinician-entered events that count as relapse in SUSTAIN-1 (clinical-spec §2.3, §2.4)."""


class TreatmentSession(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    modality: Modality
    start: UTCDateTime
    """Planned or actual start; sessions in the future still bound windows and count as
    planned N2O exposure (monitoring must be in place before the exposure, §5.1)."""
    end: UTCDateTime | None = None
    n2o_concentration_percent: int | None = None
    n2o_minutes: int | None = None
    """Minutes of inhalation; when unknown, the session's start-to-end duration is used."""

    def n2o_exposure_minutes(self) -> int:
        if self.modality != "n2o":
            return 0
        if self.n2o_minutes is not None:
            return self.n2o_minutes
        if self.end is not None:
            return max(0, int((self.end - self.start).total_seconds() // 60))
        return 0


class CourseBaseline(msgspec.Struct, frozen=True, kw_only=True):
    """B0 for one trajectory: set by a clinician, or derived by `course_baseline` (§2.4)."""

    trajectory_key: str
    response_id: str
    total: int
    authored: UTCDateTime
    partial: bool
    """As `ScoredResponse.partial`. Only a B0 recorded before partial scores were refused can be
    partial (a derived B0 is complete); the evidence shows it so the reviewer can judge."""


class UnansweredSafetyItem(msgspec.Struct, frozen=True, kw_only=True):
    link_id: str
    concern: Concern


class ScoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    instrument_id: str
    instrument_version: str
    trajectory_key: str
    """Scores are compared only within one trajectory key (one instrument, one recall window)."""
    recall_hours: int | None
    authored: UTCDateTime
    total: int | None
    prorated: bool
    partial: bool
    """Some scored item was left unanswered (`Score.missing_items`): a prorated total, or a
    domain-maxima total scored from the domain's answered items, which is not prorated (§1.4).
    Required, not defaulted, so that no view of a stored score can forget it."""
    answers: dict[str, ItemValue] = msgspec.field(default_factory=dict)
    """Answers by linkId, for rules that read single items (N2O-NEURO follow-ups, dissociation)."""
    free_text: tuple[FreeText, ...] = ()
    """Answers to the instrument's free-text items (patient-answered instruments only)."""
    safety_flags: tuple[SafetyFlag, ...] = ()
    unanswered_safety_items: tuple[UnansweredSafetyItem, ...] = ()
    reask_of: str | None = None
    """Set on the second attempt at a skipped suicide item: the id of the first response."""

    @property
    def complete(self) -> bool:
        """A total that may confirm a trajectory event: present, not prorated and no scored item
        missing (§2.4: "prorated or partially missing scores may create a CANDIDATE but never
        CONFIRMED/FULL_RETURN alone")."""
        return self.total is not None and not self.prorated and not self.partial


class MissedCheckIn(msgspec.Struct, frozen=True, kw_only=True):
    """A check-in that fell due and has not been completed."""

    id: str
    due: UTCDateTime
    session_id: str | None = None


class ClinicalEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: ClinicalEventKind
    occurred: UTCDateTime


class PatientTimeline(msgspec.Struct, frozen=True, kw_only=True):
    """One patient's current course: sessions, scored responses (including the pre-course
    baseline ones), missed check-ins and the baseline B12 risk factors."""

    patient_id: str
    sessions: tuple[TreatmentSession, ...] = ()
    responses: tuple[ScoredResponse, ...] = ()
    baselines: tuple[CourseBaseline, ...] = ()
    """Explicit B0 per trajectory key; a key without one uses `course_baseline`."""
    missed_check_ins: tuple[MissedCheckIn, ...] = ()
    b12_risk_factors: tuple[str, ...] = ()
    """LinkIds of the b12-risk questionnaire answered yes (clinical-spec §5.1)."""
    clinical_events: tuple[ClinicalEvent, ...] = ()


class N2OExposureSummary(msgspec.Struct, frozen=True, kw_only=True):
    """N2O exposure up to and including one session, as the Entonox SmPC trigger reads it."""

    session_id: str
    rolling_minutes: int
    rolling_days: int
    hours_since_previous_session: float | None


class InstrumentReading(msgspec.Struct, frozen=True):
    """What `scored_response` needs of an instrument, worked out once per instrument rather than
    once per response (a course's history holds many responses to a few instruments)."""

    recall_hours: int | None
    concerns: dict[str, Concern]
    """Each safety item's concern, by linkId."""
    text_items: frozenset[str]
    """The free-text items the rules read: a patient-answered instrument's text items (a
    clinician's note is not the patient's message, §5.3 rule 1)."""


def instrument_reading(instrument: Instrument) -> InstrumentReading:
    return InstrumentReading(
        recall_hours=instrument.recall.hours,
        concerns={item.link_id: item.concern for item in instrument.safety_items},
        text_items=frozenset(item.link_id for item in instrument.items if item.type == "text")
        if instrument.respondent == "patient"
        else frozenset(),
    )


def scored_response(
    score: Score,
    instrument: Instrument,
    *,
    response_id: str,
    authored: datetime,
    answers: dict[str, bool | int | float | str],
    reask_of: str | None = None,
) -> ScoredResponse:
    """The rules' view of one scored submission: values by linkId, and the free text of a
    patient-answered instrument's text items apart (a clinician's note is not the patient's
    message, §5.3 rule 1)."""
    return read_scored(
        score,
        instrument_reading(instrument),
        response_id=response_id,
        authored=authored,
        answers=answers,
        reask_of=reask_of,
    )


def read_scored(
    score: Score,
    reading: InstrumentReading,
    *,
    response_id: str,
    authored: datetime,
    answers: dict[str, bool | int | float | str],
    reask_of: str | None = None,
) -> ScoredResponse:
    """`scored_response` with the instrument's reading worked out already."""
    text_items = reading.text_items
    return ScoredResponse(
        id=response_id,
        instrument_id=score.instrument_id,
        instrument_version=score.instrument_version,
        trajectory_key=score.trajectory_key,
        recall_hours=reading.recall_hours,
        authored=authored,
        total=score.total,
        prorated=score.prorated,
        partial=bool(score.missing_items),
        # Most of a course's responses come without answers (`history`: only where a rule
        # reads them), so the empty case skips the comprehensions.
        answers={k: v for k, v in answers.items() if not isinstance(v, str)} if answers else {},
        free_text=tuple(
            FreeText(k, v)
            for k, v in sorted(answers.items())
            if k in text_items and isinstance(v, str) and v.strip()
        )
        if answers and text_items
        else (),
        safety_flags=score.safety_flags,
        unanswered_safety_items=tuple(
            UnansweredSafetyItem(link_id=link_id, concern=reading.concerns[link_id])
            for link_id in score.unanswered_safety_items
        ),
        reask_of=reask_of,
    )


# attrgetter builds each key in C; every rule sorts the whole course on every evaluation.
_BY_AUTHORED: Final = attrgetter("authored", "id")
_BY_START: Final = attrgetter("start", "id")


def in_order(responses: tuple[ScoredResponse, ...] | list[ScoredResponse]) -> list[ScoredResponse]:
    """Chronological, ties broken by id, so that rules never depend on input order."""
    return sorted(responses, key=_BY_AUTHORED)


def sessions_in_order(sessions: tuple[TreatmentSession, ...]) -> list[TreatmentSession]:
    return sorted(sessions, key=_BY_START)


def course_baseline(
    timeline: PatientTimeline, trajectory_key: str, *, within_days: float
) -> CourseBaseline | None:
    """B0: the explicit baseline, else the last complete score within `within_days` before the
    first session of the course (clinical-spec §2.4)."""
    explicit = [b for b in timeline.baselines if b.trajectory_key == trajectory_key]
    if explicit:
        return max(explicit, key=lambda b: (b.authored, b.response_id))
    if not timeline.sessions:
        return None
    first = sessions_in_order(timeline.sessions)[0].start
    earliest = first - timedelta(days=within_days)
    candidates = [
        r
        for r in in_order(timeline.responses)
        if r.trajectory_key == trajectory_key and r.complete and earliest <= r.authored < first
    ]
    if not candidates:
        return None
    last = candidates[-1]
    assert last.total is not None  # complete
    return CourseBaseline(
        trajectory_key=trajectory_key,
        response_id=last.id,
        total=last.total,
        authored=last.authored,
        partial=False,
    )


def n2o_exposure(
    sessions: tuple[TreatmentSession, ...], *, rolling_days: int
) -> list[N2OExposureSummary]:
    """Exposure at each N2O session: minutes in the rolling window ending with it, and the gap
    since the previous N2O session. Concentration is not weighted: the SmPC limit is stated in
    hours of use (Entonox, 50%), and counting 25% sessions fully errs on the side of monitoring."""
    n2o = [s for s in sessions_in_order(sessions) if s.modality == "n2o"]
    summaries = []
    for index, session in enumerate(n2o):
        since = session.start - timedelta(days=rolling_days)
        minutes = sum(s.n2o_exposure_minutes() for s in n2o[: index + 1] if s.start > since)
        previous = n2o[index - 1] if index else None
        summaries.append(
            N2OExposureSummary(
                session_id=session.id,
                rolling_minutes=minutes,
                rolling_days=rolling_days,
                hours_since_previous_session=None
                if previous is None
                else (session.start - previous.start).total_seconds() / 3600,
            )
        )
    return summaries
