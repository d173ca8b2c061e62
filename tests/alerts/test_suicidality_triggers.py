"""The other §5.3 triggers: the C-SSRS screener graded by the Columbia rule (§1.7, tiers of rule
4), and a patient's free text matched by the clinic's keyword list (rule 1)."""

import msgspec
import pytest

from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import build_parameters, load_parameters, read_document
from backend.domain.alerts.rules.suicidality import CSSRS_INSTRUMENT, cssrs_risk
from backend.domain.alerts.timeline import (
    FreeText,
    PatientTimeline,
    ScoredResponse,
    scored_response,
)
from questionnaires.answers import Answer, AnswerValue, Submission
from questionnaires.model import Item
from questionnaires.registry import get_instrument, score_submission
from tests.alerts.builders import day, sum_scale

DEFAULTS = load_parameters()


def _cssrs(answers: dict[str, bool], response_id: str = "c1") -> ScoredResponse:
    # The licensed screener is not in the catalogue (§6); a clinic that installs it submits this.
    return ScoredResponse(
        id=response_id,
        instrument_id=CSSRS_INSTRUMENT,
        instrument_version="1.0.0",
        trajectory_key="c-ssrs",
        recall_hours=None,
        authored=day(1),
        total=None,
        prorated=False,
        partial=False,
        answers=dict(answers),
    )


def _note(text: str, response_id: str = "n1") -> ScoredResponse:
    return ScoredResponse(
        id=response_id,
        instrument_id="side-effects",
        instrument_version="1.0.0",
        trajectory_key="side-effects",
        recall_hours=None,
        authored=day(1),
        total=None,
        prorated=False,
        partial=False,
        free_text=(FreeText("se-note", text),),
    )


def _suicidality(*responses: ScoredResponse, parameters=DEFAULTS):
    timeline = PatientTimeline(patient_id="p1", responses=responses)
    found = evaluate_alerts(timeline, parameters, now=day(2))
    return [c for c in found if c.kind == "SUICIDALITY"]


NO = False
YES = True


@pytest.mark.parametrize(
    ("answers", "risk", "tier"),
    [
        ({"cssrs-1": NO, "cssrs-2": NO, "cssrs-6": NO}, "none", None),
        ({"cssrs-1": YES, "cssrs-2": NO, "cssrs-6": NO}, "low", "priority"),
        (
            {
                "cssrs-1": YES,
                "cssrs-2": YES,
                "cssrs-3": NO,
                "cssrs-4": NO,
                "cssrs-5": NO,
                "cssrs-6": NO,
            },
            "low",
            "priority",
        ),
        (
            {
                "cssrs-1": YES,
                "cssrs-2": YES,
                "cssrs-3": YES,
                "cssrs-4": NO,
                "cssrs-5": NO,
                "cssrs-6": NO,
            },
            "moderate",
            "urgent",
        ),
        ({"cssrs-1": NO, "cssrs-2": NO, "cssrs-6": YES, "cssrs-6a": NO}, "moderate", "urgent"),
        (
            {
                "cssrs-1": YES,
                "cssrs-2": YES,
                "cssrs-3": YES,
                "cssrs-4": YES,
                "cssrs-5": NO,
                "cssrs-6": NO,
            },
            "high",
            "emergency",
        ),
        (
            {
                "cssrs-1": YES,
                "cssrs-2": YES,
                "cssrs-3": NO,
                "cssrs-4": NO,
                "cssrs-5": YES,
                "cssrs-6": NO,
            },
            "high",
            "emergency",
        ),
        ({"cssrs-1": NO, "cssrs-2": NO, "cssrs-6": YES, "cssrs-6a": YES}, "high", "emergency"),
        # Unanswered required questions: "incomplete", alerted as moderate.
        ({"cssrs-1": YES}, "incomplete", "urgent"),
        ({"cssrs-1": NO, "cssrs-2": YES, "cssrs-6": NO}, "incomplete", "urgent"),
        ({"cssrs-1": NO, "cssrs-2": NO, "cssrs-6": YES}, "incomplete", "urgent"),
        # High is high even when the rest is blank.
        ({"cssrs-2": YES, "cssrs-4": YES}, "high", "emergency"),
    ],
)
def test_cssrs_risk_levels_and_their_tiers(answers, risk, tier):
    assert cssrs_risk(answers) == risk
    found = _suicidality(_cssrs(answers))
    assert [a.severity for a in found] == ([] if tier is None else [tier])
    if tier is not None:
        [alert] = found
        assert alert.evidence.measures["cssrs_risk"] == risk
        assert {a.link_id for a in alert.evidence.answers} == {k for k, v in answers.items() if v}
        expected = "call_emergency_services_now" if tier == "emergency" else "show_crisis_resources"
        assert alert.patient_action == expected


def test_a_keyword_in_free_text_raises_an_urgent_alert_without_the_words_in_evidence():
    [alert] = _suicidality(_note("Honestly I sometimes want to die"))
    assert (alert.severity, alert.patient_action) == ("urgent", "show_crisis_resources")
    assert alert.evidence.measures == {"free_text_keyword_match": "se-note"}
    encoded = msgspec.msgpack.encode(alert.evidence)
    assert b"die" not in encoded
    assert b"Honestly" not in encoded
    assert _suicidality(_note("Headache, a bit dizzy, fine now")) == []


def test_every_matching_submission_is_its_own_alert():
    found = _suicidality(_note("suicidal", "n1"), _note("suicidal again", "n2"))
    assert sorted(a.dedup_key for a in found) == ["p1:SUICIDALITY:n1", "p1:SUICIDALITY:n2"]


def test_the_clinics_keyword_list_and_tier_apply():
    override = {
        "parameterSet": "clinic",
        "version": "1",
        "suicidality": {"freeTextKeywords": ["quiero morir"], "freeTextSeverity": "emergency"},
    }
    clinic = build_parameters(read_document("default"), (override,))
    assert _suicidality(_note("want to die"), parameters=clinic) == []
    [alert] = _suicidality(_note("A veces QUIERO  MORIR"), parameters=clinic)
    assert alert.severity == "emergency"
    off = build_parameters(
        read_document("default"),
        ({"parameterSet": "clinic", "version": "2", "suicidality": {"freeTextKeywords": []}},),
    )
    assert _suicidality(_note("suicide"), parameters=off) == []


@pytest.mark.parametrize(
    "suicidality",
    [
        {"freeTextKeywords": ["ok", "  "]},
        {"freeTextKeywords": ["self harm", "self-harm"]},
        {"freeTextKeywords": "suicide"},
        {"freeTextSeverity": "info"},
    ],
)
def test_a_bad_keyword_override_does_not_build(suicidality):
    override = {"parameterSet": "clinic", "version": "1", "suicidality": suicidality}
    with pytest.raises(ValueError, match=r"suicidality|freeText"):
        build_parameters(read_document("default"), (override,))


def test_the_clinics_cssrs_tiers_apply():
    """§5.3 rule 4's tiers are [P] data: a clinic may grade the screener more urgently."""
    override = {
        "parameterSet": "clinic",
        "version": "1",
        # Incomplete counts as moderate (§1.7), so raising one raises the other.
        "suicidality": {"cssrsTiers": {"moderate": "emergency", "incomplete": "emergency"}},
    }
    clinic = build_parameters(read_document("default"), (override,))
    assert clinic.suicidality.cssrs_tiers == {
        "low": "priority",  # not overridden: the shipped tier, merged key by key
        "moderate": "emergency",
        "incomplete": "emergency",
        "high": "emergency",
    }
    blank = {"cssrs-1": NO, "cssrs-2": YES, "cssrs-6": NO}  # asked-for answers left out
    assert [a.severity for a in _suicidality(_cssrs(blank))] == ["urgent"]
    assert [a.severity for a in _suicidality(_cssrs(blank), parameters=clinic)] == ["emergency"]
    none = {"cssrs-1": NO, "cssrs-2": NO, "cssrs-6": NO}
    assert _suicidality(_cssrs(none), parameters=clinic) == []


@pytest.mark.parametrize(
    ("tiers", "problem"),
    [
        ({"low": None}, "cssrsTiers"),  # a level with no tier would raise nothing
        ({"low": "routine"}, "priority or above"),
        ({"moderate": "emergency", "high": "urgent"}, "lower tier"),
        ({"incomplete": "priority"}, "lower tier"),  # incomplete is handled as moderate
        ({"none": "urgent"}, "cssrsTiers"),
        ({"low": "soon"}, "cssrsTiers"),
    ],
)
def test_bad_cssrs_tiers_do_not_build(tiers, problem):
    override = {"parameterSet": "clinic", "version": "1", "suicidality": {"cssrsTiers": tiers}}
    with pytest.raises(ValueError, match=problem):
        build_parameters(read_document("default"), (override,))


def test_only_a_patients_text_items_reach_the_rule():
    """The timeline keeps a patient-answered instrument's text items, hides them in its repr, and
    leaves a clinician form's text out (a clinician's note is not the patient's message)."""
    base = get_instrument("side-effects")
    note = Item(link_id="se-note", type="text", topic="Anything else", text="Anything else?")
    with_note = msgspec.structs.replace(base, items=(*base.items, note))
    submission = Submission(
        instrument_id=base.id,
        instrument_version=base.version,
        answers=(Answer(link_id="se-nausea", value=0),),
    )
    score = score_submission(submission)
    answers: dict[str, AnswerValue] = {"se-note": "I want to die", "se-nausea": 0}
    view = scored_response(score, with_note, response_id="r1", authored=day(1), answers=answers)
    assert view.free_text == (FreeText("se-note", "I want to die"),)
    assert "die" not in repr(view)
    assert "se-note" not in view.answers
    [alert] = _suicidality(view)
    assert alert.severity == "urgent"
    clinician_form = msgspec.structs.replace(with_note, respondent="clinician")
    view = scored_response(
        score, clinician_form, response_id="r1", authored=day(1), answers=answers
    )
    assert view.free_text == ()


@pytest.mark.parametrize(
    ("value", "tier", "action"),
    [(2, "priority", None), (3, "priority", None), (4, "urgent", "show_crisis_resources")],
)
def test_madrs_s_item_9_below_4_is_a_clinician_task_without_the_crisis_screen(value, tier, action):
    r = sum_scale(
        "madrs-s", "madrs-s", "m1", day(1), 20, items=9, top=6, safety_item=9, safety_value=value
    )
    [alert] = _suicidality(r)
    assert (alert.severity, alert.patient_action) == (tier, action)
