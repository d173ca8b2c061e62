"""Safety checklists without a total: N2O-NEURO (§5.1), post-session side effects (§1.9, §5.2),
ketamine bladder and misuse (§5.2), and the B12 risk-factor count (§5.1)."""

import pytest

from questionnaires.errors import AnswerProblem, AnswerValidationError
from tests.questionnaires.builders import score_of


def neuro(yes: set[int], **follow_up: bool) -> dict[str, bool]:
    values = {f"NEURO-{n}": n in yes for n in range(1, 11)}
    names = {"rapid": "NEURO-RAPID", "both_sides": "NEURO-BOTH-SIDES"}
    return values | {names[key]: value for key, value in follow_up.items()}


def test_n2o_neuro_all_no_has_no_flags_and_no_total() -> None:
    result = score_of("n2o-neuro", neuro(set()))
    assert (result.total, result.band, result.safety_flags) == (None, None, ())


@pytest.mark.parametrize(
    ("item", "tier"),
    [
        (1, "high"),
        (2, "high"),
        (3, "high"),
        (4, "urgent"),
        (5, "urgent"),
        (6, "high"),
        (7, "urgent"),
        (8, "urgent"),
        (9, "high"),
        (10, "routine"),
    ],
)
def test_n2o_neuro_tiers_follow_the_spec_table(item: int, tier: str) -> None:
    result = score_of("n2o-neuro", neuro({item}, rapid=False, both_sides=True))
    assert [(f.link_id, f.concern, f.tier, f.value) for f in result.safety_flags] == [
        (f"NEURO-{item}", "n2o_neurology", tier, True)
    ]


def test_n2o_neuro_any_yes_requires_both_follow_up_questions() -> None:
    with pytest.raises(AnswerValidationError) as caught:
        score_of("n2o-neuro", neuro({3}))
    assert caught.value.problems == (
        AnswerProblem(code="missing_required", link_id="NEURO-RAPID"),
        AnswerProblem(code="missing_required", link_id="NEURO-BOTH-SIDES"),
    )


def test_n2o_neuro_follow_ups_are_refused_when_nothing_was_reported() -> None:
    with pytest.raises(AnswerValidationError) as caught:
        score_of("n2o-neuro", neuro(set(), rapid=True))
    assert caught.value.problems == (AnswerProblem(code="not_enabled", link_id="NEURO-RAPID"),)


def test_side_effects_graded_items_raise_no_flag_but_red_flags_are_urgent() -> None:
    result = score_of(
        "side-effects", {"se-nausea": 3, "se-dissociation": 2, "se-bp-chest-pain": False}
    )
    assert result.safety_flags == ()
    result = score_of(
        "side-effects",
        {"se-bp-chest-pain": True, "se-hallucinations": True, "se-hard-to-stay-awake": True},
    )
    assert [(f.link_id, f.concern, f.tier) for f in result.safety_flags] == [
        ("se-bp-chest-pain", "blood_pressure", "urgent"),
        ("se-hard-to-stay-awake", "sedation", "urgent"),
        ("se-hallucinations", "psychotic_symptoms", "urgent"),
    ]


def ketamine(**overrides: bool | int) -> dict[str, bool | int]:
    values: dict[str, bool | int] = {
        "kb-frequency": False,
        "kb-dysuria": False,
        "kb-blood": False,
        "kb-pain": 0,
        "kb-nocturia": False,
        "kb-leaking": False,
        "km-craving": False,
        "km-use-outside": False,
        "km-more-doses": False,
    }
    return values | {key.replace("_", "-"): value for key, value in overrides.items()}


def test_ketamine_blood_in_urine_or_severe_bladder_pain_is_high() -> None:
    flags = score_of("ketamine-bladder-misuse", ketamine(kb_blood=True, kb_pain=3)).safety_flags
    assert [(f.link_id, f.tier) for f in flags] == [("kb-blood", "high"), ("kb-pain", "high")]


def test_ketamine_other_bladder_symptoms_are_reviewed_before_the_next_dose() -> None:
    flags = score_of("ketamine-bladder-misuse", ketamine(kb_frequency=True, kb_pain=2)).safety_flags
    assert [(f.link_id, f.concern, f.tier) for f in flags] == [
        ("kb-frequency", "ketamine_bladder", "routine"),
        ("kb-pain", "ketamine_bladder", "routine"),
    ]


def test_ketamine_any_misuse_item_is_high() -> None:
    flags = score_of("ketamine-bladder-misuse", ketamine(km_craving=True)).safety_flags
    assert [(f.link_id, f.concern, f.tier) for f in flags] == [
        ("km-craving", "ketamine_misuse", "high")
    ]


def test_b12_any_risk_factor_means_elevated_risk() -> None:
    none = {f"b12-{n}": False for n in range(1, 15)}
    assert (score_of("b12-risk", none).total, score_of("b12-risk", none).band) == (
        0,
        "no_risk_factor",
    )
    one = none | {"b12-10": True}
    assert (score_of("b12-risk", one).total, score_of("b12-risk", one).band) == (1, "elevated_risk")
