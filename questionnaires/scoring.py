"""Scoring as published, with the spec's missing-item rules, severity bands and safety flags.

Pure functions: answers in, a `Score` out. Every score records the scorer version, so a stored
score can be traced to the code that produced it and re-derived after a fix.
"""

from __future__ import annotations

import msgspec

from questionnaires.answers import AnswerValue, Submission, validate_answers
from questionnaires.model import (
    DomainMaximaScoring,
    Instrument,
    NoTotal,
    SafetyItem,
    SeverityBand,
    SumScoring,
    Tier,
    scored_range,
)

SCORER_VERSION = "1.0.0"
"""Bump whenever a change here could change any score."""


class SafetyFlag(msgspec.Struct, frozen=True, kw_only=True):
    """A safety item answered at or above one of its thresholds (clinical-spec §5)."""

    link_id: str
    concern: str
    tier: Tier
    value: bool | int | float


class Score(msgspec.Struct, frozen=True, kw_only=True):
    instrument_id: str
    instrument_version: str
    scorer_version: str
    trajectory_key: str
    total: int | None
    """None when the missing-item policy does not allow a total, or the form has no total."""
    band: str | None
    prorated: bool
    """True when missing items were replaced by the mean of the answered ones. Prorated totals
    may be shown but must not confirm a rebound on their own (clinical-spec §1.1, §2.4)."""
    missing_items: tuple[str, ...]
    """Scored items left unanswered."""
    unanswered_safety_items: tuple[str, ...]
    """Safety items left unanswered: never imputed; re-ask, then a clinician task (§5.3 rule 5)."""
    safety_flags: tuple[SafetyFlag, ...]


def score(instrument: Instrument, submission: Submission) -> Score:
    """Validate the submission against the instrument and score it.

    Raises `AnswerValidationError` when the answers do not fit the instrument.
    """
    answers = validate_answers(instrument, submission)
    total, prorated, missing = _total(instrument, answers)
    band = severity_band(instrument, total)
    return Score(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        scorer_version=SCORER_VERSION,
        trajectory_key=instrument.trajectory_key,
        total=total,
        band=None if band is None else band.code,
        prorated=prorated,
        missing_items=missing,
        unanswered_safety_items=tuple(
            safety.link_id for safety in instrument.safety_items if safety.link_id not in answers
        ),
        safety_flags=tuple(
            flag
            for safety in instrument.safety_items
            if safety.link_id in answers
            for flag in _safety_flag(safety, answers[safety.link_id])
        ),
    )


def severity_band(instrument: Instrument, total: int | None) -> SeverityBand | None:
    if total is None:
        return None
    return next((band for band in instrument.bands if band.min <= total <= band.max), None)


def round_half_up(numerator: int, denominator: int) -> int:
    """Round a non-negative fraction half up (Python's round() rounds half to even)."""
    return (2 * numerator + denominator) // (2 * denominator)


def _points(instrument: Instrument, link_id: str, value: AnswerValue, reverse: bool) -> int:
    item = instrument.item(link_id)
    assert item is not None  # definitions rule: scored items exist
    points = int(value)  # yes = 1, no = 0; choice values are integers
    if reverse:
        low, high = scored_range(item)
        points = low + high - points
    return points


def _total(
    instrument: Instrument, answers: dict[str, AnswerValue]
) -> tuple[int | None, bool, tuple[str, ...]]:
    scoring = instrument.scoring
    if isinstance(scoring, NoTotal):
        return None, False, ()
    if isinstance(scoring, DomainMaximaScoring):
        return _domain_maxima_total(instrument, scoring, answers)
    return _sum_total(instrument, scoring, answers)


def _sum_total(
    instrument: Instrument, scoring: SumScoring, answers: dict[str, AnswerValue]
) -> tuple[int | None, bool, tuple[str, ...]]:
    missing = tuple(link_id for link_id in scoring.items if link_id not in answers)
    points = [
        _points(instrument, link_id, answers[link_id], link_id in scoring.reversed_items)
        for link_id in scoring.items
        if link_id in answers
    ]
    if not missing:
        return sum(points), False, missing
    never = set(scoring.proration.never_prorate)
    if len(missing) > scoring.proration.max_missing or never.intersection(missing):
        return None, False, missing
    # Prorated total = round_half_up(sum_answered * n_items / n_answered) (clinical-spec §1.1).
    return round_half_up(sum(points) * len(scoring.items), len(points)), True, missing


def _domain_maxima_total(
    instrument: Instrument, scoring: DomainMaximaScoring, answers: dict[str, AnswerValue]
) -> tuple[int | None, bool, tuple[str, ...]]:
    missing = tuple(
        link_id for domain in scoring.domains for link_id in domain.items if link_id not in answers
    )
    total = 0
    for domain in scoring.domains:
        answered = [
            _points(instrument, link_id, answers[link_id], reverse=False)
            for link_id in domain.items
            if link_id in answers
        ]
        if not answered:
            return None, False, missing
        total += max(answered)
    return total, False, missing


def _safety_flag(safety: SafetyItem, value: AnswerValue) -> list[SafetyFlag]:
    assert not isinstance(value, str)  # definitions rule: safety items are not free text
    reached = [t for t in safety.thresholds if value >= t.min_value]
    if not reached:
        return []
    return [
        SafetyFlag(
            link_id=safety.link_id, concern=safety.concern, tier=reached[-1].tier, value=value
        )
    ]
