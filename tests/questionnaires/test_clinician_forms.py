"""Clinician-entered item scores: MADRS (§1.5), HAM-D17 (§1.6), CADSS-6 (§1.8), BP (§5.2)."""

import pytest

from questionnaires.errors import AnswerProblem, AnswerValidationError
from tests.questionnaires.builders import numbered, score_of

HAMD_MAXIMA = [4, 4, 4, 2, 2, 2, 4, 4, 4, 4, 4, 2, 2, 2, 4, 2, 2]


def test_madrs_ranges_from_0_to_60_with_snaith_bands() -> None:
    assert score_of("madrs", numbered("madrs", [0] * 10)).band == "normal"
    assert score_of("madrs", numbered("madrs", [6, 1] + [0] * 8)).band == "mild"  # 7
    assert score_of("madrs", numbered("madrs", [6] * 3 + [1] + [0] * 6)).band == "mild"  # 19
    assert score_of("madrs", numbered("madrs", [6] * 3 + [2] + [0] * 6)).band == "moderate"  # 20
    assert score_of("madrs", numbered("madrs", [6] * 5 + [5] + [0] * 4)).band == "severe"  # 35
    result = score_of("madrs", numbered("madrs", [6] * 10))
    assert (result.total, result.band) == (60, "severe")


def test_madrs_requires_all_ten_items() -> None:
    with pytest.raises(AnswerValidationError) as caught:
        score_of("madrs", numbered("madrs", [1] * 9))
    assert caught.value.problems == (AnswerProblem(code="missing_required", link_id="madrs-10"),)


@pytest.mark.parametrize(("item_10", "tiers"), [(1, []), (2, ["priority"]), (4, ["urgent"])])
def test_madrs_item_10_triggers_from_2(item_10: int, tiers: list[str]) -> None:
    result = score_of("madrs", numbered("madrs", [0] * 9 + [item_10]))
    assert [f.tier for f in result.safety_flags] == tiers


def test_hamd17_all_maxima_is_52_and_zeros_are_normal() -> None:
    assert score_of("hamd17", numbered("hamd17", [0] * 17)).band == "normal"
    result = score_of("hamd17", numbered("hamd17", list(HAMD_MAXIMA)))
    assert (result.total, result.band) == (52, "very_severe")


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (7, "normal"),
        (8, "mild"),
        (13, "mild"),
        (14, "moderate"),
        (18, "moderate"),
        (19, "severe"),
        (22, "severe"),
        (23, "very_severe"),
    ],
)
def test_hamd17_bands(total: int, band: str) -> None:
    values = [0] * 17
    remaining = total
    for index, maximum in enumerate(HAMD_MAXIMA):
        if index == 2:
            continue  # keep the suicide item at 0
        values[index] = min(maximum, remaining)
        remaining -= values[index]
    result = score_of("hamd17", numbered("hamd17", list(values)))
    assert (result.total, result.band) == (total, band)


def test_hamd17_two_point_items_reject_3() -> None:
    values = numbered("hamd17", [0] * 17) | {"hamd17-4": 3}
    with pytest.raises(AnswerValidationError) as caught:
        score_of("hamd17", values)
    assert caught.value.problems == (AnswerProblem(code="not_an_option", link_id="hamd17-4"),)


@pytest.mark.parametrize(
    ("item_3", "tiers"), [(1, []), (2, ["priority"]), (3, ["urgent"]), (4, ["urgent"])]
)
def test_hamd17_suicide_item_is_priority_from_2_and_urgent_from_3(
    item_3: int, tiers: list[str]
) -> None:
    values = numbered("hamd17", [0] * 17) | {"hamd17-3": item_3}
    assert [f.tier for f in score_of("hamd17", values).safety_flags] == tiers


def test_cadss6_sums_items_1_2_6_7_15_22_to_at_most_24_without_bands() -> None:
    items = [f"cadss-{n}" for n in (1, 2, 6, 7, 15, 22)]
    result = score_of("cadss6", dict.fromkeys(items, 4))
    assert (result.total, result.band) == (24, None)
    assert score_of("cadss6", dict.fromkeys(items, 0)).total == 0


def reading(systolic: int, diastolic: int) -> dict[str, int]:
    return {"bp-time-point": 1, "bp-systolic": systolic, "bp-diastolic": diastolic}


def test_blood_pressure_has_no_total_and_no_flag_when_normal() -> None:
    result = score_of("blood-pressure", reading(120, 80) | {"bp-pulse": 70})
    assert (result.total, result.band, result.safety_flags) == (None, None, ())


def test_blood_pressure_above_140_90_needs_review_and_180_110_is_urgent() -> None:
    review = score_of("blood-pressure", reading(141, 91))
    assert [(f.link_id, f.tier) for f in review.safety_flags] == [
        ("bp-systolic", "routine"),
        ("bp-diastolic", "routine"),
    ]
    assert [f.tier for f in score_of("blood-pressure", reading(140, 90)).safety_flags] == []
    urgent = score_of("blood-pressure", reading(180, 110))
    assert [f.tier for f in urgent.safety_flags] == ["urgent", "urgent"]


def test_blood_pressure_rejects_implausible_and_non_integer_readings() -> None:
    with pytest.raises(AnswerValidationError) as caught:
        score_of("blood-pressure", {"bp-time-point": 1, "bp-systolic": 301, "bp-diastolic": 80.5})
    assert caught.value.problems == (
        AnswerProblem(code="out_of_range", link_id="bp-systolic"),
        AnswerProblem(code="wrong_type", link_id="bp-diastolic"),
    )
