"""MADRS-S (Svanborg & Asberg 1994; clinical-spec §1.5): 9 items 0-6, total 0-54, 3-day recall."""

import pytest

from tests.questionnaires.builders import numbered, score_of


def madrs_s(*values: int | None) -> dict[str, int]:
    return numbered("madrs-s", list(values))  # type: ignore[return-value]


def test_madrs_s_ranges_from_0_to_54() -> None:
    assert score_of("madrs-s", madrs_s(*[0] * 9)).total == 0
    result = score_of("madrs-s", madrs_s(*[6] * 9))
    assert (result.total, result.band) == (54, "severe")


@pytest.mark.parametrize(
    ("values", "total", "band"),
    [
        ((2, 2, 2, 2, 2, 2, 0, 0, 0), 12, "minimal"),
        ((2, 2, 2, 2, 2, 2, 1, 0, 0), 13, "mild"),
        ((3, 3, 3, 3, 3, 3, 1, 0, 0), 19, "mild"),
        ((3, 3, 3, 3, 3, 3, 2, 0, 0), 20, "moderate"),
        ((6, 6, 6, 6, 6, 3, 1, 0, 0), 34, "moderate"),
        ((6, 6, 6, 6, 6, 3, 2, 0, 0), 35, "severe"),
    ],
)
def test_madrs_s_bands(values: tuple[int, ...], total: int, band: str) -> None:
    result = score_of("madrs-s", madrs_s(*values))
    assert (result.total, result.band) == (total, band)


def test_madrs_s_needs_all_nine_items() -> None:
    result = score_of("madrs-s", madrs_s(3, None, 3, 3, 3, 3, 3, 3, 0))
    assert (result.total, result.missing_items) == (None, ("madrs-s-2",))


def test_madrs_s_item_9_missing_is_reported_as_unanswered_safety_item() -> None:
    assert score_of("madrs-s", madrs_s(*[0] * 8, None)).unanswered_safety_items == ("madrs-s-9",)


@pytest.mark.parametrize(
    ("item_9", "tiers"), [(1, []), (2, ["priority"]), (3, ["priority"]), (4, ["urgent"])]
)
def test_madrs_s_item_9_is_priority_from_2_and_urgent_from_4(item_9: int, tiers: list[str]) -> None:
    result = score_of("madrs-s", madrs_s(*[0] * 8, item_9))
    assert [f.tier for f in result.safety_flags] == tiers


def test_madrs_s_is_a_different_trajectory_from_phq9() -> None:
    assert score_of("madrs-s", madrs_s(*[0] * 9)).trajectory_key == "madrs-s-3d"
