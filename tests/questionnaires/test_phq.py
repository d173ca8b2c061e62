"""PHQ-9, PHQ-2 and the PHQ-9 past-24-hours variant (clinical-spec §1.1, §1.2, §1.0).

Expected totals are computed by hand from Kroenke 2001 and the spec's proration rule:
prorated = round_half_up(sum_answered * 9 / n_answered), at most 2 of items 1-8 missing.
"""

import pytest

from questionnaires.scoring import SafetyFlag
from tests.questionnaires.builders import numbered, score_of


def phq9(*values: int | None) -> dict[str, int]:
    return numbered("phq9", list(values))  # type: ignore[return-value]


def test_phq9_all_zeros_is_zero_and_minimal() -> None:
    result = score_of("phq9", phq9(0, 0, 0, 0, 0, 0, 0, 0, 0))
    assert (result.total, result.band, result.prorated) == (0, "minimal", False)
    assert result.safety_flags == ()
    assert result.missing_items == ()


def test_phq9_all_maxima_is_27_severe_and_flags_item_9_urgent() -> None:
    result = score_of("phq9", phq9(3, 3, 3, 3, 3, 3, 3, 3, 3))
    assert (result.total, result.band) == (27, "severe")
    assert result.safety_flags == (
        SafetyFlag(link_id="phq9-9", concern="suicidality", tier="urgent", value=3),
    )


@pytest.mark.parametrize(
    ("values", "total", "band"),
    [
        ((1, 1, 1, 1, 0, 0, 0, 0, 0), 4, "minimal"),
        ((1, 1, 1, 1, 1, 0, 0, 0, 0), 5, "mild"),
        ((1, 1, 1, 1, 1, 1, 1, 1, 1), 9, "mild"),
        ((2, 1, 1, 1, 1, 1, 1, 1, 1), 10, "moderate"),
        ((2, 2, 2, 2, 2, 2, 2, 0, 0), 14, "moderate"),
        ((2, 2, 2, 2, 2, 2, 2, 1, 0), 15, "moderately_severe"),
        ((3, 3, 3, 2, 2, 2, 2, 2, 0), 19, "moderately_severe"),
        ((3, 3, 3, 3, 2, 2, 2, 2, 0), 20, "severe"),
    ],
)
def test_phq9_bands_follow_kroenke_2001_cut_points(
    values: tuple[int, ...], total: int, band: str
) -> None:
    result = score_of("phq9", phq9(*values))
    assert (result.total, result.band) == (total, band)


def test_phq9_never_adds_the_functional_item_10() -> None:
    values = phq9(0, 0, 0, 0, 0, 0, 0, 0, 0) | {"phq9-10": 3}
    assert score_of("phq9", values).total == 0


def test_phq9_prorates_one_missing_item_but_never_item_9() -> None:
    # 8 answered, sum 4: 4 * 9 / 8 = 4.5, rounded half up to 5 (half-to-even would give 4).
    result = score_of("phq9", phq9(1, 1, None, 1, 1, 0, 0, 0, 0))
    assert (result.total, result.band, result.prorated) == (5, "mild", True)
    assert result.missing_items == ("phq9-3",)

    # The same gap on item 9 gives no total at all.
    no_total = score_of("phq9", phq9(1, 1, 1, 1, 1, 0, 0, 0, None))
    assert (no_total.total, no_total.band, no_total.prorated) == (None, None, False)
    assert no_total.unanswered_safety_items == ("phq9-9",)


def test_phq9_prorates_half_up_not_to_even() -> None:
    # 8 answered, sum 20: 20 * 9 / 8 = 22.5 -> 23.
    assert score_of("phq9", phq9(3, 3, 3, 3, 3, 3, 2, None, 0)).total == 23


def test_phq9_prorates_two_missing_items() -> None:
    # 7 answered, sum 10: 10 * 9 / 7 = 12.86 -> 13.
    result = score_of("phq9", phq9(2, 2, None, 2, None, 1, 1, 1, 1))
    assert (result.total, result.band, result.prorated) == (13, "moderate", True)
    assert result.missing_items == ("phq9-3", "phq9-5")


def test_phq9_three_missing_items_give_no_total() -> None:
    result = score_of("phq9", phq9(None, None, None, 1, 1, 1, 1, 1, 1))
    assert (result.total, result.prorated) == (None, False)
    assert result.missing_items == ("phq9-1", "phq9-2", "phq9-3")


def test_phq9_suicide_item_missing_gives_no_total_even_when_all_else_is_answered() -> None:
    result = score_of("phq9", phq9(3, 3, 3, 3, 3, 3, 3, 3, None))
    assert result.total is None
    assert result.missing_items == ("phq9-9",)
    assert result.unanswered_safety_items == ("phq9-9",)
    assert result.safety_flags == ()


@pytest.mark.parametrize(("item_9", "tier"), [(1, "priority"), (2, "urgent"), (3, "urgent")])
def test_phq9_item_9_is_flagged_at_any_positive_answer(item_9: int, tier: str) -> None:
    result = score_of("phq9", phq9(0, 0, 0, 0, 0, 0, 0, 0, item_9))
    assert result.total == item_9
    assert [(f.link_id, f.tier, f.value) for f in result.safety_flags] == [("phq9-9", tier, item_9)]


def test_phq9_score_records_instrument_scorer_and_trajectory() -> None:
    result = score_of("phq9", phq9(0, 0, 0, 0, 0, 0, 0, 0, 0))
    assert (result.instrument_id, result.instrument_version) == ("phq9", "1.0.0")
    assert result.scorer_version == "1.0.0"
    assert result.trajectory_key == "phq9-2w"


@pytest.mark.parametrize(
    ("values", "total", "band"),
    [
        ((0, 0), 0, "negative"),
        ((1, 1), 2, "negative"),
        ((2, 1), 3, "positive"),
        ((3, 3), 6, "positive"),
    ],
)
def test_phq2_is_positive_from_3(values: tuple[int, int], total: int, band: str) -> None:
    result = score_of("phq2", numbered("phq2", list(values)))
    assert (result.total, result.band) == (total, band)


def test_phq2_needs_both_items() -> None:
    result = score_of("phq2", {"phq2-1": 3})
    assert (result.total, result.missing_items) == (None, ("phq2-2",))


def test_phq2_has_no_suicide_item() -> None:
    assert score_of("phq2", numbered("phq2", [3, 3])).safety_flags == ()


def test_phq9_24h_is_its_own_trajectory_without_bands() -> None:
    result = score_of("phq9-24h", numbered("phq9-24h", [1] * 9))
    assert (result.total, result.band, result.trajectory_key) == (9, None, "phq9-24h")


def test_phq9_24h_never_prorates_item_9() -> None:
    values = numbered("phq9-24h", [1, 1, 1, 1, 1, 1, 1, 1, None])
    assert score_of("phq9-24h", values).total is None
    values = numbered("phq9-24h", [1, None, 1, 1, 1, 1, 1, 1, 2])
    result = score_of("phq9-24h", values)
    # 8 answered, sum 9: 9 * 9 / 8 = 10.125 -> 10.
    assert (result.total, result.prorated) == (10, True)
    assert [f.tier for f in result.safety_flags] == ["urgent"]
