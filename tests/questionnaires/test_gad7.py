"""GAD-7 (Spitzer 2006; clinical-spec §1.3): sum of 7 items, one missing item prorated x 7/6."""

import pytest

from tests.questionnaires.builders import numbered, score_of


def gad7(*values: int | None) -> dict[str, int]:
    return numbered("gad7", list(values))  # type: ignore[return-value]


def test_gad7_all_zeros_is_minimal_and_all_maxima_is_21_severe() -> None:
    assert (score_of("gad7", gad7(0, 0, 0, 0, 0, 0, 0)).band) == "minimal"
    result = score_of("gad7", gad7(3, 3, 3, 3, 3, 3, 3))
    assert (result.total, result.band) == (21, "severe")


@pytest.mark.parametrize(
    ("values", "total", "band"),
    [
        ((1, 1, 1, 1, 0, 0, 0), 4, "minimal"),
        ((1, 1, 1, 1, 1, 0, 0), 5, "mild"),
        ((2, 2, 2, 1, 1, 1, 0), 9, "mild"),
        ((2, 2, 2, 1, 1, 1, 1), 10, "moderate"),
        ((2, 2, 2, 2, 2, 2, 2), 14, "moderate"),
        ((3, 2, 2, 2, 2, 2, 2), 15, "severe"),
    ],
)
def test_gad7_bands(values: tuple[int, ...], total: int, band: str) -> None:
    result = score_of("gad7", gad7(*values))
    assert (result.total, result.band) == (total, band)


def test_gad7_prorates_exactly_one_missing_item_half_up() -> None:
    # 6 answered, sum 9: 9 * 7 / 6 = 10.5 -> 11.
    result = score_of("gad7", gad7(2, 2, None, 2, 1, 1, 1))
    assert (result.total, result.band, result.prorated) == (11, "moderate", True)


def test_gad7_two_missing_items_give_no_total() -> None:
    result = score_of("gad7", gad7(2, 2, None, None, 1, 1, 1))
    assert result.total is None
    assert result.missing_items == ("gad7-3", "gad7-4")


def test_gad7_never_adds_the_functional_item() -> None:
    assert score_of("gad7", gad7(0, 0, 0, 0, 0, 0, 0) | {"gad7-8": 3}).total == 0
