"""The patient's own §5.2 items: home blood pressure ≥180 systolic or ≥110 diastolic is URGENT,
"new memory or concentration problems over weeks" ROUTINE; thresholds and tiers are alert
parameters (`ketamine.homeBp*`, `ketamine.cognition*`)."""

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.domain.alerts.candidate import AlertCandidate, AnswerEvidence
from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import (
    AlertParameters,
    ParameterError,
    build_parameters,
    load_parameters,
    read_document,
)
from backend.domain.alerts.timeline import PatientTimeline, ScoredResponse, TreatmentSession
from questionnaires.answers import AnswerValue
from tests.alerts.builders import T0, day, n2o_session, response

DEFAULTS = load_parameters()
KETAMINE = TreatmentSession(id="k1", modality="ketamine_iv", start=T0, end=T0 + timedelta(hours=2))
ESKETAMINE = TreatmentSession(id="e1", modality="esketamine", start=T0, end=T0 + timedelta(hours=2))


def evaluate(
    *responses: ScoredResponse,
    session: TreatmentSession = KETAMINE,
    parameters: AlertParameters = DEFAULTS,
) -> list[AlertCandidate]:
    timeline = PatientTimeline(patient_id="p1", sessions=(session,), responses=responses)
    return evaluate_alerts(timeline, parameters, now=day(30))


def found(candidates: list[AlertCandidate]) -> list[tuple[str, str, str | None]]:
    return [(c.kind, c.severity, c.patient_action) for c in candidates]


def home_bp(
    systolic: int | None, diastolic: int | None, *, response_id: str = "h1", at: float = 1
) -> ScoredResponse:
    answers: dict[str, AnswerValue] = {"hbp-measured": systolic is not None}
    if systolic is not None and diastolic is not None:
        answers |= {"hbp-systolic": systolic, "hbp-diastolic": diastolic}
    return response("home-blood-pressure", response_id, day(at), answers)


def cognition(yes: bool, *, response_id: str = "c1", at: float = 7) -> ScoredResponse:
    return response("ketamine-cognition", response_id, day(at), {"kc-memory-concentration": yes})


URGENT_ONLY = [("BLOOD_PRESSURE", "urgent", None)]


@pytest.mark.parametrize(
    ("systolic", "diastolic", "expected"),
    [
        (179, 109, []),  # just below both
        (180, 80, URGENT_ONLY),  # systolic at its threshold
        (120, 110, URGENT_ONLY),  # diastolic at its threshold
        (210, 125, URGENT_ONLY),  # both: one alert, not two
        (178, 100, []),  # above the clinic's 140/90 review line: §5.2 sets none for home
        (300, 200, URGENT_ONLY),
        (50, 20, []),
    ],
)
def test_home_reading_at_or_above_either_threshold_is_urgent(
    systolic: int, diastolic: int, expected: list[tuple[str, str, None]]
) -> None:
    assert found(evaluate(home_bp(systolic, diastolic))) == expected


def test_a_patient_without_a_monitor_raises_nothing() -> None:
    assert evaluate(home_bp(None, None)) == []
    no_answer = response("home-blood-pressure", "h0", day(1), {})
    assert evaluate(no_answer) == []


# Readings as the form accepts them: the top number above the bottom one (`valueOrders`).
_BELOW_BOTH = st.integers(20, 109).flatmap(
    lambda diastolic: st.tuples(st.integers(max(50, diastolic + 1), 179), st.just(diastolic))
)


@given(reading=_BELOW_BOTH)
def test_a_reading_below_both_thresholds_never_raises(reading: tuple[int, int]) -> None:
    systolic, diastolic = reading
    assert evaluate(home_bp(systolic, diastolic)) == []


@given(
    data=st.data(),
    high=st.sampled_from(["systolic", "diastolic", "both"]),
    session=st.sampled_from([KETAMINE, ESKETAMINE, n2o_session("s1", T0)]),
)
def test_a_reading_at_or_above_either_threshold_always_raises_one_urgent_alert(
    data: st.DataObject, high: str, session: TreatmentSession
) -> None:
    if high == "diastolic":
        diastolic = data.draw(st.integers(110, 200))
        systolic = data.draw(st.integers(diastolic + 1, 300))
    else:
        systolic = data.draw(st.integers(180, 300))
        diastolic = data.draw(st.integers(110 if high == "both" else 20, min(200, systolic - 1)))
    [alert] = evaluate(home_bp(systolic, diastolic), session=session)
    assert (alert.kind, alert.severity, alert.audience) == ("BLOOD_PRESSURE", "urgent", "clinician")
    assert alert.sla_minutes == DEFAULTS.sla_minutes["urgent"]
    # §5.2 gives "call emergency services now" for the symptoms row, not for a reading alone.
    assert alert.patient_action is None


def test_the_evidence_holds_the_whole_reading_and_the_thresholds_used() -> None:
    [alert] = evaluate(home_bp(150, 112))
    assert alert.rule_id == "ketamine@1.1.0"
    assert alert.parameter_version == "interlude-default@1.2.0"
    assert alert.evidence.answers == (
        AnswerEvidence(response_id="h1", link_id="hbp-systolic", value=150),
        AnswerEvidence(response_id="h1", link_id="hbp-diastolic", value=112),
    )
    assert alert.evidence.measures == {"systolic_at_least": 180, "diastolic_at_least": 110}
    assert [s.response_id for s in alert.evidence.scores] == ["h1"]


def test_each_high_reading_is_a_new_trigger_of_the_one_open_blood_pressure_alert() -> None:
    alerts = evaluate(home_bp(185, 90, response_id="h1"), home_bp(190, 95, response_id="h2", at=2))
    assert [c.occurrence_key for c in alerts] == ["p1:BLOOD_PRESSURE:h1", "p1:BLOOD_PRESSURE:h2"]
    assert {c.dedup_key for c in alerts} == {"p1:BLOOD_PRESSURE"}
    # A clinic-entered reading and the symptoms share the kind: one blood pressure alert to review.
    clinic = response(
        "blood-pressure",
        "bp1",
        day(3),
        {"bp-time-point": 1, "bp-systolic": 182, "bp-diastolic": 80},
    )
    assert {c.dedup_key for c in evaluate(clinic, home_bp(185, 90))} == {"p1:BLOOD_PRESSURE"}


def _clinic(ketamine: dict[str, Any]) -> AlertParameters:
    override = {"parameterSet": "clinic-a", "version": "1.0.0", "ketamine": ketamine}
    return build_parameters(read_document("default"), (override,))


def test_thresholds_and_tier_are_parameters_a_clinic_may_override() -> None:
    stricter = _clinic(
        {"homeBpSystolicAtLeast": 170, "homeBpDiastolicAtLeast": 105, "homeBpSeverity": "high"}
    )
    assert found(evaluate(home_bp(170, 80), parameters=stricter)) == [
        ("BLOOD_PRESSURE", "high", None)
    ]
    assert found(evaluate(home_bp(120, 105), parameters=stricter)) == [
        ("BLOOD_PRESSURE", "high", None)
    ]
    assert evaluate(home_bp(169, 104), parameters=stricter) == []
    assert evaluate(home_bp(170, 80)) == []  # the defaults are untouched


@pytest.mark.parametrize(
    ("ketamine", "message"),
    [
        ({"homeBpSeverity": "info"}, "homeBpSeverity must be routine or above"),
        ({"cognitionSeverity": "info"}, "cognitionSeverity must be routine or above"),
        ({"homeBpSystolicAtLeast": 0}, "thresholds must be positive"),
        ({"homeBpDiastolicAtLeast": -1}, "thresholds must be positive"),
        ({"homeBpDiastolicItem": "hbp-systolic"}, "two items"),
        ({"homeBpSystolicAtLeast": 180.5}, "Expected `int`"),
        ({"cognitionItem": None}, "Expected `str`"),
    ],
)
def test_unsafe_ketamine_parameters_are_refused(ketamine: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        _clinic(ketamine)


def test_new_memory_or_concentration_problems_are_routine() -> None:
    [alert] = evaluate(cognition(True))
    assert (alert.kind, alert.severity, alert.patient_action) == (
        "COGNITIVE_PROBLEMS",
        "routine",
        None,
    )
    assert alert.sla_minutes == DEFAULTS.sla_minutes["routine"]
    assert alert.evidence.answers == (
        AnswerEvidence(response_id="c1", link_id="kc-memory-concentration", value=True),
    )
    assert evaluate(cognition(False)) == []


def test_cognition_tier_is_a_parameter() -> None:
    high = _clinic({"cognitionSeverity": "high"})
    assert found(evaluate(cognition(True), parameters=high)) == [
        ("COGNITIVE_PROBLEMS", "high", None)
    ]


def test_each_yes_is_a_trigger_of_the_one_open_cognition_alert() -> None:
    alerts = evaluate(cognition(True), cognition(True, response_id="c2", at=14))
    assert [c.occurrence_key for c in alerts] == [
        "p1:COGNITIVE_PROBLEMS:c1",
        "p1:COGNITIVE_PROBLEMS:c2",
    ]
    assert {c.dedup_key for c in alerts} == {"p1:COGNITIVE_PROBLEMS"}


def test_answers_authored_after_now_are_not_yet_seen() -> None:
    timeline = PatientTimeline(
        patient_id="p1", sessions=(KETAMINE,), responses=(home_bp(200, 120), cognition(True))
    )
    assert evaluate_alerts(timeline, DEFAULTS, now=day(0.5)) == []
