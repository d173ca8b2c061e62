"""MNSI patient questionnaire (Feldman 1994; University of Michigan scoring; clinical-spec §1.9):
yes to items 1-3, 5-6, 8-9, 11-12, 14-15 and no to items 7 and 13 score 1; items 4 and 10 are not
scored; range 0-13, 7 or more abnormal."""

from tests.questionnaires.builders import score_of

SCORED_YES = (1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15)


def mnsi(yes: set[int]) -> dict[str, bool]:
    return {f"mnsi-{n}": n in yes for n in range(1, 16)}


def test_mnsi_all_no_scores_2_for_the_reversed_items_7_and_13() -> None:
    result = score_of("mnsi-q", mnsi(set()))
    assert (result.total, result.band) == (2, "normal")


def test_mnsi_all_yes_scores_11_because_7_and_13_count_no() -> None:
    assert score_of("mnsi-q", mnsi(set(range(1, 16)))).total == 11


def test_mnsi_healthy_answers_score_0() -> None:
    assert score_of("mnsi-q", mnsi({7, 13})).total == 0


def test_mnsi_worst_answers_score_13_abnormal() -> None:
    result = score_of("mnsi-q", mnsi(set(SCORED_YES)))
    assert (result.total, result.band) == (13, "abnormal")


def test_mnsi_items_4_and_10_are_not_scored() -> None:
    assert score_of("mnsi-q", mnsi({4, 7, 10, 13})).total == 0


def test_mnsi_abnormal_from_7() -> None:
    assert score_of("mnsi-q", mnsi({1, 2, 3, 5, 6, 7, 8, 13})).band == "normal"  # 6
    assert score_of("mnsi-q", mnsi({1, 2, 3, 5, 6, 8, 9, 7, 13})).band == "abnormal"  # 7
    assert score_of("mnsi-q", mnsi({1, 2, 3, 5, 6})).total == 7  # 5 yes + 7 and 13 answered no


def test_mnsi_missing_scored_item_gives_no_total_but_unscored_items_may_be_skipped() -> None:
    values = mnsi({7, 13})
    del values["mnsi-4"]
    assert score_of("mnsi-q", values).total == 0
    del values["mnsi-13"]
    result = score_of("mnsi-q", values)
    assert (result.total, result.missing_items) == (None, ("mnsi-13",))
