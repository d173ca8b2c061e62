"""Small builders so golden tests read as the published rules they check."""

from collections.abc import Mapping, Sequence

from questionnaires.answers import Answer, AnswerValue, Submission
from questionnaires.registry import get_instrument, score_submission
from questionnaires.scoring import Score


def submission(instrument_id: str, values: Mapping[str, AnswerValue]) -> Submission:
    instrument = get_instrument(instrument_id)
    return Submission(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        answers=tuple(Answer(link_id=k, value=v) for k, v in values.items()),
    )


def numbered(prefix: str, values: Sequence[AnswerValue | None]) -> dict[str, AnswerValue]:
    """Items `<prefix>-1`, `<prefix>-2`, ... in order; None leaves that item unanswered."""
    return {f"{prefix}-{n}": v for n, v in enumerate(values, 1) if v is not None}


def score_of(instrument_id: str, values: Mapping[str, AnswerValue]) -> Score:
    return score_submission(submission(instrument_id, values))
