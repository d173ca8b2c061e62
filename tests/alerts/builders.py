"""Timelines built from real scored submissions, so the rules see what production will see."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from hypothesis import strategies as st

from backend.domain.alerts.candidate import AlertCandidate
from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import AlertParameters, ReboundEvent, load_parameters
from backend.domain.alerts.timeline import (
    PatientTimeline,
    ScoredResponse,
    TreatmentSession,
    scored_response,
)
from questionnaires.answers import Answer, AnswerValue, Submission
from questionnaires.model import Item
from questionnaires.registry import get_instrument, score_submission

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
"""Session 1 starts here; "day n" is n x 24 h later."""


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def response(
    instrument_id: str,
    response_id: str,
    authored: datetime,
    answers: Mapping[str, AnswerValue],
    *,
    reask_of: str | None = None,
) -> ScoredResponse:
    instrument = get_instrument(instrument_id)
    submission = Submission(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        answers=tuple(Answer(link_id=k, value=v) for k, v in answers.items()),
    )
    return scored_response(
        score_submission(submission),
        instrument,
        response_id=response_id,
        authored=authored,
        answers=dict(answers),
        reask_of=reask_of,
    )


def _spread(points: int, items: int, top: int) -> list[int]:
    assert 0 <= points <= items * top
    values = [points // items] * items
    for i in range(points % items):
        values[i] += 1
    return values


def sum_scale(
    instrument_id: str,
    prefix: str,
    response_id: str,
    authored: datetime,
    total: int,
    *,
    items: int,
    top: int,
    safety_item: int | None = None,
    safety_value: int = 0,
    prorated: bool = False,
) -> ScoredResponse:
    """A sum-scored instrument (items `<prefix>-1..n`) answered to reach `total`; prorated
    answers leave out items (never the safety item) and pick values whose prorated total is
    `total`, as the published rule computes it."""
    others = [n for n in range(1, items + 1) if n != safety_item]
    base = {} if safety_item is None else {f"{prefix}-{safety_item}": safety_value}
    rest = total - (safety_value if safety_item is not None else 0)
    result: ScoredResponse | None = None
    if not prorated:
        values = _spread(rest, len(others), top)
        answers: dict[str, AnswerValue] = {
            **base,
            **{f"{prefix}-{n}": v for n, v in zip(others, values, strict=True)},
        }
        result = response(instrument_id, response_id, authored, answers)
    else:
        for missing in (1, 2):
            kept = others[missing:]
            for points in range(len(kept) * top + 1):
                values = _spread(points, len(kept), top)
                answers = {
                    **base,
                    **{f"{prefix}-{n}": v for n, v in zip(kept, values, strict=True)},
                }
                candidate = response(instrument_id, response_id, authored, answers)
                if candidate.total == total and candidate.prorated:
                    result = candidate
                    break
            if result is not None:
                break
    assert result is not None, f"no prorated answers give {total}"
    assert result.total == total
    return result


def phq9(
    response_id: str, authored: datetime, total: int, *, item9: int = 0, prorated: bool = False
) -> ScoredResponse:
    return sum_scale(
        "phq9",
        "phq9",
        response_id,
        authored,
        total,
        items=9,
        top=3,
        safety_item=9,
        safety_value=item9,
        prorated=prorated,
    )


QIDS_DOMAINS: tuple[tuple[int, ...], ...] = (
    (1, 2, 3, 4),
    (5,),
    (6, 7, 8, 9),
    (10,),
    (11,),
    (13,),
    (14,),
    (15, 16),
)
"""QIDS-SR16's scored domains by item number (clinical-spec §1.4), without item 12, the safety
item, which the builders answer 0 so that no suicidality alert joins the rebound ones."""


def qids_answers(total: int) -> dict[str, AnswerValue]:
    """Every QIDS-SR16 item answered, item 12 at 0, domains filled in order to reach `total`;
    the first item of a domain carries its maximum, the others are 0."""
    values = _spread(total, len(QIDS_DOMAINS), 3)
    answers: dict[str, AnswerValue] = {"qids-12": 0}
    for domain, value in zip(QIDS_DOMAINS, values, strict=True):
        answers |= {f"qids-{n}": value if n == domain[0] else 0 for n in domain}
    return answers


def qids(
    response_id: str, authored: datetime, total: int, *, partial: bool = False
) -> ScoredResponse:
    """A QIDS-SR16 response with `total`; `partial` leaves item 2 unanswered, which the
    domain-maxima rule scores from items 1, 3 and 4 to the same total, not prorated (§1.4)."""
    answers = qids_answers(total)
    if partial:
        del answers["qids-2"]
    result = response("qids-sr16", response_id, authored, answers)
    assert result.total == total
    assert not result.prorated
    return result


def qids_course(
    baseline: int, scores: Sequence[tuple[float, int] | tuple[float, int, bool]]
) -> PatientTimeline:
    """QIDS-SR16 B0 a day before one N2O session at day 0; scores as (day, total) or
    (day, total, partial); response ids are "d<day>"."""
    responses = [qids("b0", day(-1), baseline)]
    for entry in scores:
        partial = bool(entry[2]) if len(entry) > 2 else False
        responses.append(qids(f"d{entry[0]:g}", day(entry[0]), int(entry[1]), partial=partial))
    return PatientTimeline(
        patient_id="p1", sessions=(n2o_session("s1", T0),), responses=tuple(responses)
    )


def n2o_session(
    session_id: str, start: datetime, minutes: int = 60, percent: int = 50
) -> TreatmentSession:
    return TreatmentSession(
        id=session_id,
        modality="n2o",
        start=start,
        end=start + timedelta(minutes=minutes),
        n2o_concentration_percent=percent,
        n2o_minutes=minutes,
    )


def phq9_course(
    baseline: int,
    scores: Sequence[tuple[float, int] | tuple[float, int, bool] | tuple[float, ...]],
    **extra: Any,
) -> PatientTimeline:
    """The spec's test-vector set-up: PHQ-9 B0 a day before one N2O session at day 0;
    scores as (day, total) or (day, total, prorated); response ids are "d<day>"."""
    responses = [phq9("b0", day(-1), baseline)]
    for entry in scores:
        d, total = entry[0], int(entry[1])
        prorated = bool(entry[2]) if len(entry) > 2 else False
        responses.append(phq9(f"d{d:g}", day(d), total, prorated=prorated))
    return PatientTimeline(
        patient_id="p1",
        sessions=(n2o_session("s1", T0),),
        responses=tuple(responses),
        **extra,
    )


def events(candidates: list[AlertCandidate]) -> set[tuple[str, str]]:
    """(kind, the triggering response id or trigger) for each candidate."""
    return {(c.kind, c.occurrence_key.split(":")[-1]) for c in candidates}


REBOUND_KINDS = frozenset(get_args(ReboundEvent))
"""The events of the rebound rule (clinical-spec §2.4)."""
_SHIPPED = load_parameters()


def rebound_events(
    timeline: PatientTimeline,
    parameters: AlertParameters | None = None,
    now: datetime | None = None,
) -> set[tuple[str, str]]:
    """The rebound rule's `events` as of ``now`` (day 60), with the shipped parameters unless
    others are given."""
    found = evaluate_alerts(
        timeline, _SHIPPED if parameters is None else parameters, now=now or day(60)
    )
    return {e for e in events(found) if e[0] in REBOUND_KINDS}


def item_values(item: Item, text: st.SearchStrategy[str]) -> st.SearchStrategy[AnswerValue]:
    """Valid answers to one item of the catalogue (its options, bounds or type); ``text`` for
    text items, which each property chooses for itself."""
    if item.type == "choice":
        return st.sampled_from([o.value for o in item.options])
    if item.type == "boolean":
        return st.booleans()
    if item.type == "integer":
        low = int(item.min_value if item.min_value is not None else 0)
        high = int(item.max_value if item.max_value is not None else 300)
        return st.integers(low, high)
    if item.type == "decimal":
        bottom = float(item.min_value if item.min_value is not None else 0)
        top = float(item.max_value if item.max_value is not None else 300)
        return st.floats(bottom, top, allow_nan=False)
    return text
