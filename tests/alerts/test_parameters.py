"""Parameter documents: the spec's defaults, and the clinic-override merge rule."""

import pytest

from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import (
    ParameterError,
    build_parameters,
    load_parameters,
    read_document,
)
from tests.alerts.builders import day, events, phq9_course


def test_defaults_are_the_spec_table_for_phq9():
    phq9 = load_parameters().rebound["phq9-2w"]
    assert (phq9.min_gain_abs, phq9.min_gain_rel, phq9.min_rise_abs, phq9.min_fraction) == (
        5,
        0.25,
        6,
        0.5,
    )
    assert (phq9.confirm_min_gap_h, phq9.confirm_max_gap_d, phq9.full_return_margin) == (48, 15, 2)
    assert (phq9.relapse_threshold, phq9.severe_threshold, phq9.nonresponse_check_day) == (
        10,
        20,
        7,
    )


def test_relative_only_instruments_have_no_absolute_criteria():
    rebound = load_parameters().rebound
    for key in ("madrs-s-3d", "madrs-1w", "qids-sr16-7d", "hamd17-1w"):
        assert rebound[key].min_gain_abs is None
        assert rebound[key].min_rise_abs is None
    assert rebound["madrs-1w"].relapse_threshold == 22
    assert rebound["qids-sr16-7d"].relapse_threshold == 11
    assert "phq2-2w" not in rebound


def test_conservative_profile_needs_a_rise_of_7():
    parameters = load_parameters("conservative-rebound")
    assert parameters.version == "interlude-default@1.2.0+conservative-rebound@1.0.0"
    assert parameters.rebound["phq9-2w"].min_rise_abs == 7
    assert parameters.rebound["gad7-2w"].min_rise_abs == 4  # its own value wins over defaults
    timeline = phq9_course(20, [(1, 10), (3, 12), (7, 16), (10, 18)])
    found = events(evaluate_alerts(timeline, parameters, now=day(30)))
    assert ("REBOUND_CANDIDATE", "d7") not in found
    assert ("REBOUND_CANDIDATE", "d10") in found
    assert {c.parameter_version for c in evaluate_alerts(timeline, parameters, now=day(30))} == {
        parameters.version
    }


def test_null_in_an_override_switches_a_criterion_off():
    override = {
        "parameterSet": "c",
        "version": "2",
        "rebound": {"trajectories": {"phq9-2w": {"severeThreshold": None}}},
    }
    assert (
        build_parameters(read_document("default"), (override,)).rebound["phq9-2w"].severe_threshold
        is None
    )


def test_override_merges_nested_objects_key_by_key():
    override = {"parameterSet": "c", "version": "2", "slaMinutes": {"urgent": 30}}
    parameters = build_parameters(read_document("default"), (override,))
    assert parameters.sla_minutes["urgent"] == 30
    assert parameters.sla_minutes["emergency"] == 15


@pytest.mark.parametrize(
    "override",
    [
        {"parameterSet": "c", "version": "2", "rebound": {"defaults": {"minRiseAbsolute": 7}}},
        {"parameterSet": "c", "version": "2", "ketamine": {"dissociationItem": 3}},
        {"version": "2"},
        {"parameterSet": "c", "version": "2", "rebound": {"defaults": {"confirmMinGapH": 400}}},
        {"parameterSet": "c", "version": "2", "rebound": {"defaults": {"minFraction": 0}}},
        # A clinician task that reaches no clinician, an event with no tier, an unknown event.
        {"parameterSet": "c", "version": "2", "reboundSeverity": {"FULL_RETURN": "info"}},
        {"parameterSet": "c", "version": "2", "reboundSeverity": {"SEVERE_SCORE": None}},
        {"parameterSet": "c", "version": "2", "reboundSeverity": {"SUICIDALITY": "high"}},
    ],
)
def test_bad_overrides_are_refused(override):
    with pytest.raises(ParameterError):
        build_parameters(read_document("default"), (override,))


def test_rebound_event_tiers_are_the_spec_table_and_a_clinic_may_change_them():
    """§2.4's "Severity" column is [P] data: candidates inform, the rest are clinician tasks."""
    assert load_parameters().rebound_severity == {
        "REBOUND_CANDIDATE": "info",
        "NON_RESPONSE_SESSION": "info",
        "REBOUND_CONFIRMED": "routine",
        "LOSS_OF_RESPONSE": "routine",
        "FULL_RETURN": "high",
        "RELAPSE_LIKE": "high",
        "SEVERE_SCORE": "high",
    }
    override = {"parameterSet": "c", "version": "2", "reboundSeverity": {"FULL_RETURN": "urgent"}}
    clinic = build_parameters(read_document("default"), (override,))
    timeline = phq9_course(20, [(1, 10), (3, 12), (7, 16), (10, 18)])
    tiers = {c.kind: c.severity for c in evaluate_alerts(timeline, clinic, now=day(30))}
    assert tiers["FULL_RETURN"] == "urgent"
    assert tiers["REBOUND_CONFIRMED"] == "routine"
