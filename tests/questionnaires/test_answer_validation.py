"""Answer validation: every problem is reported with its linkId and a code, never with the value."""

import pytest

from questionnaires.answers import Answer, AnswerValue, Submission, validate_answers
from questionnaires.errors import AnswerProblem, AnswerValidationError
from questionnaires.model import Instrument
from questionnaires.registry import get_instrument
from questionnaires.scoring import score
from tests.questionnaires.synthetic import demo


def submit(
    instrument: Instrument, *pairs: tuple[str, AnswerValue], version: str | None = None
) -> Submission:
    return Submission(
        instrument_id=instrument.id,
        instrument_version=version or instrument.version,
        answers=tuple(Answer(link_id=k, value=v) for k, v in pairs),
    )


def problems(instrument: Instrument, submission: Submission) -> list[tuple[str | None, str]]:
    with pytest.raises(AnswerValidationError) as caught:
        validate_answers(instrument, submission)
    return [(p.link_id, p.code) for p in caught.value.problems]


def test_wrong_instrument_and_wrong_version_are_refused_before_any_item() -> None:
    phq9 = get_instrument("phq9")
    other = Submission(instrument_id="gad7", instrument_version="1.0.0", answers=())
    assert problems(phq9, other) == [(None, "wrong_instrument")]
    assert problems(phq9, submit(phq9, ("phq9-1", 9), version="2.0.0")) == [(None, "wrong_version")]


def test_every_item_problem_is_reported_at_once() -> None:
    phq9 = get_instrument("phq9")
    found = problems(
        phq9,
        submit(
            phq9, ("phq9-1", 4), ("phq9-1", 0), ("phq9-2", "2"), ("phq9-3", True), ("phq9-99", 0)
        ),
    )
    assert found == [
        ("phq9-1", "not_an_option"),
        ("phq9-1", "duplicate_item"),
        ("phq9-2", "wrong_type"),
        ("phq9-3", "wrong_type"),
        ("phq9-99", "unknown_item"),
    ]


def test_error_messages_never_contain_answer_values() -> None:
    phq9 = get_instrument("phq9")
    with pytest.raises(AnswerValidationError) as caught:
        validate_answers(phq9, submit(phq9, ("phq9-1", 987654), ("phq9-2", "my secret")))
    message = str(caught.value)
    assert "987654" not in message
    assert "secret" not in message
    assert "phq9-1: not_an_option" in message


def test_yes_no_items_take_only_booleans() -> None:
    mnsi = get_instrument("mnsi-q")
    assert problems(mnsi, submit(mnsi, ("mnsi-1", 1))) == [("mnsi-1", "wrong_type")]


def test_numbers_text_and_follow_ups() -> None:
    instrument = demo()
    found = problems(
        instrument,
        submit(instrument, ("why", "too long"), ("naps", 1.5), ("hours", "8")),
    )
    assert found == [
        ("why", "too_long"),
        ("naps", "wrong_type"),
        ("hours", "wrong_type"),
        ("why", "not_enabled"),
    ]
    assert problems(instrument, submit(instrument, ("hours", 24.5))) == [("hours", "out_of_range")]
    assert problems(instrument, submit(instrument, ("hours", float("nan")))) == [
        ("hours", "out_of_range")
    ]
    assert problems(instrument, submit(instrument, ("why", 3), ("mood", 2), ("hours", 1))) == [
        ("why", "wrong_type")
    ]
    assert problems(instrument, submit(instrument)) == [("hours", "missing_required")]


def test_valid_answers_come_back_by_link_id() -> None:
    instrument = demo()
    answers = validate_answers(
        instrument, submit(instrument, ("mood", 2), ("why", "work"), ("hours", 7), ("naps", 3))
    )
    assert answers == {"mood": 2, "why": "work", "hours": 7, "naps": 3}


def test_a_yes_does_not_count_as_option_value_1_in_follow_up_conditions() -> None:
    instrument = demo()
    # "why" is enabled by mood = 2 only; True must not be mistaken for an integer.
    assert problems(instrument, submit(instrument, ("mood", 1), ("why", "x"), ("hours", 1))) == [
        ("why", "not_enabled")
    ]


def test_reversed_yes_no_items_and_integer_safety_items_in_a_synthetic_form() -> None:
    instrument = demo()
    result = score(
        instrument, submit(instrument, ("mood", 2), ("slept", False), ("hours", 5), ("naps", 3))
    )
    assert (result.total, result.band) == (3, "high")
    assert [(f.link_id, f.tier, f.value) for f in result.safety_flags] == [("naps", "routine", 3)]
    prorated = score(instrument, submit(instrument, ("slept", True), ("hours", 5)))
    assert (prorated.total, prorated.prorated) == (0, True)


def test_answer_problem_without_item() -> None:
    assert (
        str(AnswerValidationError([AnswerProblem(code="malformed")]))
        == "invalid answers (malformed)"
    )
