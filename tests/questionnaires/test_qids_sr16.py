"""QIDS-SR16 (Rush 2003; clinical-spec §1.4): the sum of nine domain scores, where sleep
(items 1-4), appetite/weight (6-9) and psychomotor (15-16) each count only their highest item."""

from tests.questionnaires.builders import numbered, score_of


def qids(*values: int | None) -> dict[str, int]:
    return numbered("qids", list(values))  # type: ignore[return-value]


def test_qids_all_zeros_is_none_and_all_maxima_is_27_very_severe() -> None:
    assert (
        score_of("qids-sr16", qids(*[0] * 16)).total,
        score_of("qids-sr16", qids(*[0] * 16)).band,
    ) == (
        0,
        "none",
    )
    result = score_of("qids-sr16", qids(*[3] * 16))
    assert (result.total, result.band) == (27, "very_severe")


def test_qids_counts_only_the_highest_item_of_sleep_appetite_weight_and_psychomotor() -> None:
    # sleep max(1,3,0,2)=3; mood 2; appetite/weight max(0,2,1,0)=2; concentration 1; self-view 1;
    # suicide 0; interest 2; energy 1; psychomotor max(1,3)=3 -> 15 (a plain sum would be 20).
    result = score_of("qids-sr16", qids(1, 3, 0, 2, 2, 0, 2, 1, 0, 1, 1, 0, 2, 1, 1, 3))
    assert (result.total, result.band, result.prorated) == (15, "moderate", False)


def test_qids_domain_bands() -> None:
    assert (
        score_of("qids-sr16", qids(3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).band == "none"
    )
    assert (
        score_of("qids-sr16", qids(3, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).band == "mild"
    )
    # 3 + 3 + 3 + 3 + 3 + 0 + 3 + 3 + 0 = 21
    assert score_of("qids-sr16", qids(3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 3, 3, 0, 0)).total == 21


def test_qids_scores_a_multi_item_domain_from_its_answered_items() -> None:
    # Only decreased appetite (6) and decreased weight (8) answered, as on the paper form.
    result = score_of("qids-sr16", qids(1, 1, 1, 1, 1, 2, None, 3, None, 1, 1, 0, 1, 1, 1, 1))
    assert result.total == 1 + 1 + 3 + 1 + 1 + 0 + 1 + 1 + 1
    assert result.missing_items == ("qids-7", "qids-9")
    assert result.prorated is False


def test_qids_unanswered_domain_gives_no_total() -> None:
    result = score_of("qids-sr16", qids(None, None, None, None, *[1] * 12))
    assert result.total is None
    assert result.band is None


def test_qids_missing_single_item_domain_gives_no_total() -> None:
    assert score_of("qids-sr16", qids(*[1] * 9, None, *[1] * 6)).total is None


def test_qids_item_12_missing_gives_no_total_and_is_reported() -> None:
    result = score_of("qids-sr16", qids(*[1] * 11, None, *[1] * 4))
    assert result.total is None
    assert result.unanswered_safety_items == ("qids-12",)


def test_qids_item_12_is_a_suicide_safety_item() -> None:
    result = score_of("qids-sr16", qids(*[0] * 11, 1, *[0] * 4))
    assert [(f.link_id, f.concern, f.tier) for f in result.safety_flags] == [
        ("qids-12", "suicidality", "priority")
    ]
