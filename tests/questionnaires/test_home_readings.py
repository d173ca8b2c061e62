"""The patient's own §5.2 items: a home blood pressure reading (only if they own a monitor) and
"new memory or concentration problems over weeks"."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from questionnaires.answers import AnswerValue
from questionnaires.errors import AnswerProblem, AnswerValidationError
from questionnaires.registry import get_instrument
from tests.questionnaires.builders import score_of


def reading(systolic: AnswerValue, diastolic: AnswerValue) -> dict[str, AnswerValue]:
    return {"hbp-measured": True, "hbp-systolic": systolic, "hbp-diastolic": diastolic}


def problems(instrument_id: str, values: dict[str, AnswerValue]) -> tuple[AnswerProblem, ...]:
    with pytest.raises(AnswerValidationError) as caught:
        score_of(instrument_id, values)
    return caught.value.problems


@pytest.mark.parametrize("no_cuff", [{}, {"hbp-measured": False}])
def test_a_patient_without_a_monitor_may_skip_or_answer_no(no_cuff: dict[str, AnswerValue]) -> None:
    result = score_of("home-blood-pressure", no_cuff)
    assert (result.total, result.missing_items, result.unanswered_safety_items) == (None, (), ())
    assert result.safety_flags == ()


def test_a_reading_is_a_pair_once_the_patient_says_they_took_one() -> None:
    assert problems("home-blood-pressure", {"hbp-measured": True, "hbp-systolic": 150}) == (
        AnswerProblem(code="missing_required", link_id="hbp-diastolic"),
    )


def test_numbers_without_a_reading_taken_are_refused() -> None:
    assert problems("home-blood-pressure", {"hbp-systolic": 150, "hbp-diastolic": 90}) == (
        AnswerProblem(code="not_enabled", link_id="hbp-systolic"),
        AnswerProblem(code="not_enabled", link_id="hbp-diastolic"),
    )


@pytest.mark.parametrize(
    ("systolic", "diastolic", "expected"),
    [
        (49, 80, [("out_of_range", "hbp-systolic")]),
        (301, 80, [("out_of_range", "hbp-systolic")]),
        (120, 19, [("out_of_range", "hbp-diastolic")]),
        (120, 201, [("out_of_range", "hbp-diastolic")]),
        (120.5, 80, [("wrong_type", "hbp-systolic")]),
        ("120", True, [("wrong_type", "hbp-systolic"), ("wrong_type", "hbp-diastolic")]),
        # The top number is above the bottom one: swapped or equal numbers are an entry slip
        # (a swapped 120/185 would otherwise raise a diastolic alert for a reading of 185/120).
        (120, 185, [("not_above", "hbp-systolic")]),
        (90, 90, [("not_above", "hbp-systolic")]),
        # Another fault of either number is reported alone, not twice.
        (49, 180, [("out_of_range", "hbp-systolic")]),
        (60, 201, [("out_of_range", "hbp-diastolic")]),
    ],
)
def test_implausible_readings_are_refused(
    systolic: AnswerValue, diastolic: AnswerValue, expected: list[tuple[str, str]]
) -> None:
    found = problems("home-blood-pressure", reading(systolic, diastolic))
    assert [(p.code, p.link_id) for p in found] == expected


@given(systolic=st.integers(50, 300), diastolic=st.integers(20, 200))
def test_every_plausible_reading_is_accepted_and_flags_nothing_itself(
    systolic: int, diastolic: int
) -> None:
    if systolic <= diastolic:
        assert problems("home-blood-pressure", reading(systolic, diastolic)) == (
            AnswerProblem(code="not_above", link_id="hbp-systolic"),
        )
        return
    # The thresholds are alert parameters (ketamine.homeBp*), not safety items of the form: a
    # safety item would make a skipped reading a re-asked "unanswered safety item".
    result = score_of("home-blood-pressure", reading(systolic, diastolic))
    assert (result.safety_flags, result.unanswered_safety_items) == ((), ())


@pytest.mark.parametrize(("systolic", "diastolic"), [(80, 120), (120, 120), (121, 120)])
def test_the_clinicians_reading_is_checked_the_same_way(systolic: int, diastolic: int) -> None:
    values: dict[str, AnswerValue] = {
        "bp-time-point": 1,
        "bp-systolic": systolic,
        "bp-diastolic": diastolic,
    }
    if systolic > diastolic:
        assert score_of("blood-pressure", values).total is None
    else:
        assert problems("blood-pressure", values) == (
            AnswerProblem(code="not_above", link_id="bp-systolic"),
        )


def test_home_readings_are_in_mmhg_and_answered_by_the_patient() -> None:
    instrument = get_instrument("home-blood-pressure")
    assert instrument.respondent == "patient"
    assert {i.link_id: i.unit for i in instrument.items if i.type == "integer"} == {
        "hbp-systolic": "mm[Hg]",
        "hbp-diastolic": "mm[Hg]",
    }


def test_cognition_is_one_required_yes_no_item_worded_as_the_spec() -> None:
    instrument = get_instrument("ketamine-cognition")
    [item] = instrument.items
    assert (item.link_id, item.type, item.required) == ("kc-memory-concentration", "boolean", True)
    assert item.text is not None
    assert "memory or concentration" in item.text
    assert "weeks" in instrument.recall.text
    assert score_of("ketamine-cognition", {"kc-memory-concentration": True}).safety_flags == ()
    assert problems("ketamine-cognition", {}) == (
        AnswerProblem(code="missing_required", link_id="kc-memory-concentration"),
    )
