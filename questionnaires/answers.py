"""The answer form a submission arrives in, and its validation against an instrument.

Validation reports every problem at once (a phone should be able to fix all of them in one
round trip) and never echoes a value: answers are PHI.
"""

from __future__ import annotations

import math
from typing import TypeGuard

import msgspec

from questionnaires.errors import AnswerProblem, AnswerValidationError, ProblemCode
from questionnaires.model import Instrument, Item

AnswerValue = bool | int | float | str


class Answer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    link_id: str
    value: AnswerValue


class Submission(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    """Answers to one version of one instrument. Unanswered items are simply absent."""

    instrument_id: str
    instrument_version: str
    answers: tuple[Answer, ...]


def validate_answers(instrument: Instrument, submission: Submission) -> dict[str, AnswerValue]:
    """Return the answers by linkId, or raise `AnswerValidationError` listing every problem."""
    if submission.instrument_id != instrument.id:
        raise AnswerValidationError([AnswerProblem(code="wrong_instrument")])
    if submission.instrument_version != instrument.version:
        raise AnswerValidationError([AnswerProblem(code="wrong_version")])
    problems: list[AnswerProblem] = []
    answers: dict[str, AnswerValue] = {}
    for answer in submission.answers:
        item = instrument.item(answer.link_id)
        if item is None:
            problems.append(AnswerProblem(code="unknown_item", link_id=answer.link_id))
        elif answer.link_id in answers:
            problems.append(AnswerProblem(code="duplicate_item", link_id=answer.link_id))
        else:
            answers[answer.link_id] = answer.value
            problem = _value_problem(item, answer.value)
            if problem is not None:
                problems.append(problem)
    faulty = {problem.link_id for problem in problems}
    for order in instrument.value_orders:
        above, below = answers.get(order.above), answers.get(order.below)
        # Only between two valid numbers: any other fault is already a problem of its own.
        comparable = faulty.isdisjoint((order.above, order.below))
        if comparable and _is_number(above) and _is_number(below) and not above > below:
            problems.append(AnswerProblem(code="not_above", link_id=order.above))
    for item in instrument.items:
        enabled = is_enabled(item, answers)
        if item.link_id in answers and not enabled:
            problems.append(AnswerProblem(code="not_enabled", link_id=item.link_id))
        if item.required and enabled and item.link_id not in answers:
            problems.append(AnswerProblem(code="missing_required", link_id=item.link_id))
    if problems:
        raise AnswerValidationError(problems)
    return answers


def is_enabled(item: Item, answers: dict[str, AnswerValue]) -> bool:
    """Follow-up items are shown when any of their conditions holds (FHIR enableBehavior any)."""
    if not item.enable_when:
        return True
    return any(
        condition.link_id in answers and _same_answer(answers[condition.link_id], condition.answer)
        for condition in item.enable_when
    )


def _is_number(value: AnswerValue | None) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_answer(given: AnswerValue, expected: bool | int) -> bool:
    # True == 1 in Python; a yes must not enable an item conditioned on option value 1.
    return type(given) is type(expected) and given == expected


def _value_problem(item: Item, value: AnswerValue) -> AnswerProblem | None:
    def problem(code: ProblemCode) -> AnswerProblem:
        return AnswerProblem(code=code, link_id=item.link_id)

    is_int = isinstance(value, int) and not isinstance(value, bool)
    if item.type == "choice":
        if not is_int:
            return problem("wrong_type")
        if value not in {option.value for option in item.options}:
            return problem("not_an_option")
    elif item.type == "boolean":
        if not isinstance(value, bool):
            return problem("wrong_type")
    elif item.type in ("integer", "decimal"):
        is_number = is_int or (item.type == "decimal" and isinstance(value, float))
        if not is_number:
            return problem("wrong_type")
        assert isinstance(value, int | float)
        assert item.min_value is not None  # definitions rule: numeric items have bounds
        assert item.max_value is not None
        if not math.isfinite(value) or not item.min_value <= value <= item.max_value:
            return problem("out_of_range")
    else:
        if not isinstance(value, str):
            return problem("wrong_type")
        if item.max_length is not None and len(value) > item.max_length:
            return problem("too_long")
    return None
