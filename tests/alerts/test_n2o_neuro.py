"""Nitrous oxide neurological red flags, MNSI-Q and exposure (clinical-spec §5.1)."""

from datetime import timedelta

import pytest

from backend.domain.alerts.engine import evaluate_alerts, holds_next_n2o_session
from backend.domain.alerts.parameters import build_parameters, load_parameters, read_document
from backend.domain.alerts.timeline import PatientTimeline, TreatmentSession
from backend.domain.sessions.baselines import within_days
from tests.alerts.builders import T0, day, n2o_session, response

DEFAULTS = load_parameters()


def neuro(response_id, authored, *yes, rapid=None):
    answers = {f"NEURO-{n}": (f"NEURO-{n}" in yes) for n in range(1, 11)}
    if rapid is not None:
        answers["NEURO-RAPID"] = rapid
        answers["NEURO-BOTH-SIDES"] = False
    return response("n2o-neuro", response_id, authored, answers)


def evaluate(*responses, sessions=None, risk=(), now=None):
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=tuple(sessions or (n2o_session("s1", T0),)),
        responses=tuple(responses),
        b12_risk_factors=tuple(risk),
    )
    return evaluate_alerts(timeline, DEFAULTS, now=now or day(30))


def symptom_alert(candidates):
    [alert] = [c for c in candidates if c.kind == "N2O_NEURO_SYMPTOMS"]
    return alert


@pytest.mark.parametrize(
    ("item", "tier"),
    [("NEURO-1", "high"), ("NEURO-4", "urgent"), ("NEURO-7", "urgent"), ("NEURO-10", "routine")],
)
def test_single_item_tiers(item, tier):
    alert = symptom_alert(evaluate(neuro("r1", day(2), item, rapid=False)))
    assert alert.severity == tier
    assert alert.hold_next_n2o_session is (tier != "routine")


def test_no_yes_no_alert():
    assert evaluate(neuro("r1", day(2))) == []


def test_high_item_with_rapid_progression_escalates_to_urgent():
    alert = symptom_alert(evaluate(neuro("r1", day(2), "NEURO-1", rapid=True)))
    assert alert.severity == "urgent"
    assert alert.patient_action == "advise_same_day_medical_assessment"
    assert alert.evidence.measures["escalated"] is True


def test_two_high_items_escalate_to_urgent():
    alert = symptom_alert(evaluate(neuro("r1", day(2), "NEURO-1", "NEURO-6", rapid=False)))
    assert alert.severity == "urgent"


def test_b12_risk_factor_raises_one_step():
    assert (
        symptom_alert(
            evaluate(neuro("r1", day(2), "NEURO-10", rapid=False), risk=["b12-10"])
        ).severity
        == "high"
    )
    assert (
        symptom_alert(
            evaluate(neuro("r1", day(2), "NEURO-1", rapid=False), risk=["b12-10"])
        ).severity
        == "urgent"
    )


def test_high_and_above_hold_the_next_session_and_make_labs_due():
    found = evaluate(neuro("r1", day(2), "NEURO-3", rapid=False))
    assert holds_next_n2o_session(found)
    labs = [c for c in found if c.kind == "HAEMATOLOGICAL_MONITORING_DUE"]
    assert [c.evidence.measures["reason"] for c in labs] == ["neurological_red_flag"]


def test_routine_does_not_hold():
    assert not holds_next_n2o_session(evaluate(neuro("r1", day(2), "NEURO-10", rapid=False)))


def mnsi(response_id, authored, points):
    scored = ["mnsi-1", "mnsi-2", "mnsi-3", "mnsi-5", "mnsi-6", "mnsi-8", "mnsi-9", "mnsi-11"]
    answers = {f"mnsi-{n}": False for n in range(1, 16)} | {"mnsi-7": True, "mnsi-13": True}
    answers |= dict.fromkeys(scored[:points], True)
    return response("mnsi-q", response_id, authored, answers)


def test_mnsi_rise_of_two_from_baseline_is_high():
    found = evaluate(mnsi("m0", day(-2), 1), mnsi("m1", day(28), 3))
    [alert] = [c for c in found if c.kind == "MNSI_NEUROPATHY"]
    assert (alert.severity, alert.evidence.measures["rise"]) == ("high", 2)
    assert alert.hold_next_n2o_session


def test_mnsi_rise_of_one_below_four_is_nothing():
    assert [
        c
        for c in evaluate(mnsi("m0", day(-2), 1), mnsi("m1", day(28), 2))
        if c.kind == "MNSI_NEUROPATHY"
    ] == []


def test_mnsi_total_of_four_is_high_even_at_baseline():
    found = evaluate(mnsi("m0", day(-2), 4))
    assert [c.severity for c in found if c.kind == "MNSI_NEUROPATHY"] == ["high"]


def test_mnsi_baseline_window_is_a_parameter():
    """§4.2 takes the baseline MNSI-Q "before first session (<=7 d)" [P]: a clinic may widen it,
    and the baselines service derives the same B0 as the rule."""
    early_baseline = (mnsi("m0", day(-10), 1), mnsi("m1", day(28), 3))
    assert not [c for c in evaluate(*early_baseline) if c.kind == "MNSI_NEUROPATHY"]
    override = {
        "parameterSet": "clinic",
        "version": "1",
        "n2oNeuro": {"mnsiBaselineWithinDays": 14},
    }
    wider = build_parameters(read_document("default"), (override,))
    timeline = PatientTimeline(
        patient_id="p1", sessions=(n2o_session("s1", T0),), responses=early_baseline
    )
    [alert] = [
        c for c in evaluate_alerts(timeline, wider, now=day(30)) if c.kind == "MNSI_NEUROPATHY"
    ]
    assert alert.evidence.measures["rise"] == 2
    assert within_days(wider, "mnsi-q") == 14
    assert within_days(DEFAULTS, "mnsi-q") == 7


def monitoring_reasons(found):
    return sorted(
        (c.evidence.measures["reason"], c.evidence.session_ids[0])
        for c in found
        if c.kind == "HAEMATOLOGICAL_MONITORING_DUE"
    )


def test_twice_weekly_sessions_make_monitoring_due():
    sessions = [n2o_session("s1", T0), n2o_session("s2", day(3.5)), n2o_session("s3", day(7))]
    assert monitoring_reasons(evaluate(sessions=sessions)) == [
        ("sessions_too_close", "s2"),
        ("sessions_too_close", "s3"),
    ]


def test_weekly_sessions_are_not_too_close():
    sessions = [n2o_session(f"s{i}", day(7 * i)) for i in range(4)]
    assert monitoring_reasons(evaluate(sessions=sessions)) == []


def test_cumulative_24_hours_in_28_days_makes_monitoring_due():
    sessions = [n2o_session(f"s{i}", day(4 * i), minutes=240) for i in range(7)]
    assert monitoring_reasons(evaluate(sessions=sessions)) == [
        ("cumulative_exposure", "s5"),
        ("cumulative_exposure", "s6"),
    ]


def test_planned_session_counts_before_it_happens():
    sessions = [n2o_session("s1", T0), n2o_session("s2", day(2))]
    found = evaluate(sessions=sessions, now=day(1))
    [due] = [c for c in found if c.kind == "HAEMATOLOGICAL_MONITORING_DUE"]
    assert due.triggered_at == day(1)


def test_ketamine_sessions_are_not_n2o_exposure():
    sessions = [
        TreatmentSession(
            id=f"k{i}",
            modality="ketamine_iv",
            start=day(2 * i),
            end=day(2 * i) + timedelta(minutes=40),
        )
        for i in range(4)
    ]
    assert monitoring_reasons(evaluate(sessions=sessions)) == []


def test_b12_risk_factors_make_labs_due_before_the_first_session():
    assert monitoring_reasons(evaluate(risk=["b12-5"])) == [("b12_risk_factors", "s1")]
