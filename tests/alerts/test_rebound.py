"""The rebound and relapse rule (clinical-spec §2.4): the spec's test vectors first, then the
eligibility, confirmation-gap and data-quality rules one by one."""

from datetime import timedelta

import pytest

from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import build_parameters, load_parameters, read_document
from backend.domain.alerts.timeline import ClinicalEvent, CourseBaseline, PatientTimeline
from tests.alerts.builders import (
    T0,
    day,
    n2o_session,
    phq9,
    phq9_course,
    rebound_events,
    response,
    sum_scale,
)

DEFAULTS = load_parameters()
NOW = day(60)

# --- The spec's test vectors (PHQ-9, B0 = 20, session at day 0) --------------------------------


def test_vector_1_candidate_then_confirmed_full_return_and_loss_of_response():
    """The spec lists LOSS_OF_RESPONSE at d10 (d7 and d10 above 10). Its own rule also holds for
    the earlier pair d3 = 12 and d7 = 16 (both above 0.5 x B0, 4 days apart), so the rule as
    written raises it at d7 already; with one open alert per kind the clinician sees one alert,
    opened at d7, with d10 attached. Reported to the spec's authors rather than bent to fit."""
    timeline = phq9_course(20, [(1, 10), (3, 12), (7, 16), (10, 18)])
    assert rebound_events(timeline) == {
        ("REBOUND_CANDIDATE", "d7"),
        ("REBOUND_CONFIRMED", "d10"),
        ("FULL_RETURN", "d10"),
        ("LOSS_OF_RESPONSE", "d7"),
        ("LOSS_OF_RESPONSE", "d10"),
    }


def test_vector_1_measures_are_the_spec_arithmetic():
    timeline = phq9_course(20, [(1, 10), (3, 12), (7, 16), (10, 18)])
    confirmed = next(
        c for c in evaluate_alerts(timeline, DEFAULTS, now=NOW) if c.kind == "REBOUND_CONFIRMED"
    )
    assert confirmed.evidence.measures["gain"] == 10
    assert confirmed.evidence.measures["rise"] == 8
    assert confirmed.evidence.measures["fraction"] == pytest.approx(0.8)
    assert {(s.role, s.response_id) for s in confirmed.evidence.scores} == {
        ("reference", "b0"),
        ("nadir", "d1"),
        ("score", "d10"),
        ("previous", "d7"),
    }
    assert confirmed.severity == "routine"
    assert confirmed.rule_id.startswith("rebound@")
    assert confirmed.parameter_version == "interlude-default@1.2.0"


def test_vector_2_gain_below_mcid_is_not_eligible_and_reports_non_response_at_day_7():
    timeline = phq9_course(20, [(1, 17), (3, 16), (7, 19)])
    assert rebound_events(timeline) == {("NON_RESPONSE_SESSION", "s1")}
    non_response = next(
        c for c in evaluate_alerts(timeline, DEFAULTS, now=NOW) if c.kind == "NON_RESPONSE_SESSION"
    )
    assert non_response.triggered_at == day(7)
    assert non_response.severity == "info"


def test_vector_3_rise_of_5_is_nothing_and_the_score_is_prorated():
    timeline = phq9_course(20, [(1, 8), (7, 13, True)])
    assert timeline.responses[-1].prorated
    assert rebound_events(timeline) == set()


def test_vector_4_second_candidate_one_day_later_does_not_confirm():
    timeline = phq9_course(20, [(1, 8), (2, 14), (3, 15)])
    assert rebound_events(timeline) == {("REBOUND_CANDIDATE", "d2"), ("REBOUND_CANDIDATE", "d3")}


def test_vector_5_after_remission_candidate_relapse_like_and_loss_of_response():
    timeline = phq9_course(20, [(1, 4), (8, 11), (15, 12)])
    assert rebound_events(timeline) == {
        ("REBOUND_CANDIDATE", "d15"),
        ("RELAPSE_LIKE", "d15"),
        ("LOSS_OF_RESPONSE", "d15"),
    }


# --- Eligibility and confirmation ---------------------------------------------------------------


def test_rebound_needs_two_confirming_scores_48h_apart():
    exactly_48h = phq9_course(20, [(1, 8), (3, 15), (5, 15)])
    assert ("REBOUND_CONFIRMED", "d5") in rebound_events(exactly_48h)
    under_48h = phq9_course(20, [(1, 8), (3, 15), (4.9, 15)])
    assert ("REBOUND_CONFIRMED", "d4.9") not in rebound_events(under_48h)


def test_confirmation_more_than_15_days_later_is_a_new_candidate():
    timeline = phq9_course(20, [(1, 8), (3, 15), (19, 15)])
    assert rebound_events(timeline) >= {
        ("REBOUND_CANDIDATE", "d3"),
        ("REBOUND_CANDIDATE", "d19"),
    }
    assert not any(kind == "REBOUND_CONFIRMED" for kind, _ in rebound_events(timeline))


def test_confirmation_needs_the_immediately_previous_score_to_be_a_candidate():
    timeline = phq9_course(20, [(1, 8), (3, 15), (5, 10), (8, 15)])
    assert not any(kind == "REBOUND_CONFIRMED" for kind, _ in rebound_events(timeline))


def test_minimum_gain_is_the_larger_of_the_absolute_and_relative_criteria():
    # B0 = 24: 0.25 x 24 = 6 > MCID 5, so a nadir of 19 (gain 5) is not eligible.
    assert rebound_events(phq9_course(24, [(1, 19), (7, 24)])) == {
        ("NON_RESPONSE_SESSION", "s1"),
        ("SEVERE_SCORE", "d7"),
    }
    assert ("NON_RESPONSE_SESSION", "s1") not in rebound_events(phq9_course(24, [(1, 18), (7, 19)]))


def test_nadir_ignores_scores_within_two_hours_of_the_session():
    timeline = phq9_course(20, [(1 / 24, 8), (3, 15), (6, 15)])
    assert rebound_events(timeline) == set()


def test_non_response_is_reported_once_per_session():
    timeline = phq9_course(20, [(1, 17), (7, 18), (9, 18), (14, 19)])
    assert rebound_events(timeline) == {("NON_RESPONSE_SESSION", "s1")}


def test_a_new_session_starts_a_new_window_and_keeps_b0():
    timeline = phq9_course(20, [(1, 8), (3, 15)])
    second = n2o_session("s2", day(4))
    later = (phq9("d5", day(5), 9), phq9("d7", day(7), 16))
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=(*timeline.sessions, second),
        responses=(*timeline.responses, *later),
    )
    # d3 is a candidate in W_1; in W_2 the nadir is d5 and d7 is a candidate, but d3 and d7 sit
    # in different windows, so nothing is confirmed.
    assert rebound_events(timeline) == {("REBOUND_CANDIDATE", "d3"), ("REBOUND_CANDIDATE", "d7")}


def test_confirming_score_may_fall_after_day_28_when_no_session_followed():
    timeline = phq9_course(20, [(1, 8), (27, 15), (30, 15)])
    assert ("REBOUND_CONFIRMED", "d30") in rebound_events(timeline)


def test_per_session_reference_uses_the_pre_session_score():
    override = {
        "parameterSet": "clinic",
        "version": "1",
        "rebound": {"defaults": {"reference": "per_session"}},
    }
    parameters = build_parameters(read_document("default"), (override,))
    base = phq9_course(14, [(-0.5, 20), (1, 8), (3, 15), (6, 15)])
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=base.sessions,
        responses=base.responses,
        baselines=(
            CourseBaseline(
                trajectory_key="phq9-2w",
                response_id="b0",
                total=14,
                authored=day(-1),
                partial=False,
            ),
        ),
    )
    # Against B0 = 14 (gain 6) and against B_1 = 20 (gain 12) the rise of 7 is a rebound either
    # way, but FULL_RETURN differs: 15 >= 14 - 2, while 15 < 20 - 2.
    assert ("FULL_RETURN", "d6") in rebound_events(timeline)
    assert ("FULL_RETURN", "d6") not in rebound_events(timeline, parameters)
    assert ("REBOUND_CONFIRMED", "d6") in rebound_events(timeline, parameters)


def test_explicit_course_baseline_wins_over_the_derived_one():
    timeline = phq9_course(16, [(1, 8), (3, 15), (6, 15)])
    clinician_set = PatientTimeline(
        patient_id="p1",
        sessions=timeline.sessions,
        responses=timeline.responses,
        baselines=(
            CourseBaseline(
                trajectory_key="phq9-2w", response_id="x", total=26, authored=day(-3), partial=False
            ),
        ),
    )
    assert ("FULL_RETURN", "d6") in rebound_events(timeline)
    assert ("FULL_RETURN", "d6") not in rebound_events(clinician_set)


def test_without_a_baseline_within_7_days_there_is_no_reference():
    timeline = phq9_course(20, [(1, 8), (3, 15), (6, 15)])
    stale = PatientTimeline(
        patient_id="p1",
        sessions=timeline.sessions,
        responses=(phq9("b0", day(-9), 20), *timeline.responses[1:]),
    )
    assert rebound_events(stale) == set()


# --- Data quality --------------------------------------------------------------------------------


def test_prorated_scores_may_be_candidates_but_never_confirm():
    timeline = phq9_course(20, [(1, 8), (3, 15, True), (6, 15, True)])
    assert rebound_events(timeline) == {("REBOUND_CANDIDATE", "d3"), ("REBOUND_CANDIDATE", "d6")}


def test_prorated_score_never_raises_full_return_alone():
    timeline = phq9_course(20, [(1, 8), (4, 19, True)])
    assert rebound_events(timeline) == {("REBOUND_CANDIDATE", "d4")}


def test_prorated_score_never_sets_the_nadir():
    timeline = phq9_course(20, [(1, 16), (2, 4, True), (7, 17)])
    assert rebound_events(timeline) == {("NON_RESPONSE_SESSION", "s1")}


def test_scores_with_another_recall_window_never_mix():
    # The nadir is on MADRS-S (3-day recall); the PHQ-9 2-week trajectory has no post-session
    # score until day 7 and day 10, so PHQ-9 sees no gain at all.
    timeline = phq9_course(20, [(7, 16), (10, 18)])
    madrs = [
        sum_scale("madrs-s", "madrs-s", f"m{d}", day(d), t, items=9, top=6, safety_item=9)
        for d, t in ((-1, 30), (1, 10))
    ]
    mixed = PatientTimeline(
        patient_id="p1", sessions=timeline.sessions, responses=(*timeline.responses, *madrs)
    )
    assert {k for k, _ in rebound_events(mixed)} <= {"NON_RESPONSE_SESSION"}


def test_each_trajectory_uses_its_own_parameters():
    # GAD-7: reliable change is 4 points (NHS Talking Therapies), so a rise of 4 is a candidate.
    responses = [
        sum_scale("gad7", "gad7", name, day(d), total, items=7, top=3)
        for name, d, total in (("g0", -1, 16), ("g1", 1, 6), ("g3", 3, 11))
    ]
    timeline = PatientTimeline(
        patient_id="p1", sessions=(n2o_session("s1", T0),), responses=tuple(responses)
    )
    candidates = evaluate_alerts(timeline, DEFAULTS, now=NOW)
    assert [(c.kind, c.evidence.measures["trajectory_key"]) for c in candidates] == [
        ("REBOUND_CANDIDATE", "gad7-2w")
    ]


def test_phq2_is_a_screen_and_never_a_trajectory():
    responses = [
        response("phq2", name, day(d), {"phq2-1": a, "phq2-2": b})
        for name, d, a, b in (("p0", -1, 3, 3), ("p1", 1, 0, 0), ("p3", 3, 3, 3), ("p6", 6, 3, 3))
    ]
    timeline = PatientTimeline(
        patient_id="p1", sessions=(n2o_session("s1", T0),), responses=tuple(responses)
    )
    assert evaluate_alerts(timeline, DEFAULTS, now=NOW) == []


def test_scores_authored_after_now_are_ignored():
    timeline = phq9_course(20, [(1, 10), (3, 12), (7, 16), (10, 18)])
    assert rebound_events(timeline, now=day(8)) == {
        ("REBOUND_CANDIDATE", "d7"),
        ("LOSS_OF_RESPONSE", "d7"),
    }


# --- Severe scores and relapse -------------------------------------------------------------------


def test_severe_score_after_the_course_began_whatever_the_trajectory():
    timeline = phq9_course(22, [(1, 21, True), (3, 12)])
    assert rebound_events(timeline) == {("SEVERE_SCORE", "d1")}
    severe = next(
        c for c in evaluate_alerts(timeline, DEFAULTS, now=NOW) if c.kind == "SEVERE_SCORE"
    )
    assert severe.severity == "high"
    assert severe.sla_minutes == DEFAULTS.sla_minutes["high"]


def test_relapse_needs_two_scores_5_to_15_days_apart():
    close = phq9_course(20, [(1, 4), (8, 11), (11, 12)])
    assert not any(kind == "RELAPSE_LIKE" for kind, _ in rebound_events(close))
    far = phq9_course(20, [(1, 4), (8, 11), (24, 12)])
    assert not any(kind == "RELAPSE_LIKE" for kind, _ in rebound_events(far))


def test_relapse_needs_remission_first():
    timeline = phq9_course(20, [(1, 6), (8, 11), (15, 12)])
    assert not any(kind == "RELAPSE_LIKE" for kind, _ in rebound_events(timeline))


def test_relapse_pair_may_span_a_session():
    """§2.4 gives RELAPSE_LIKE its own gap (5-15 days) and no window condition, unlike
    REBOUND_CONFIRMED ("both in W_k") and LOSS_OF_RESPONSE ("same gap rules"): SUSTAIN-1 counted
    relapse during maintenance dosing, where weekly pre-dose scores always have a session
    between them."""
    base = phq9_course(20, [(1, 4)])
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=(*base.sessions, n2o_session("s2", day(7)), n2o_session("s3", day(14))),
        responses=(*base.responses, phq9("d6", day(6), 11), phq9("d13", day(13), 12)),
    )
    assert ("RELAPSE_LIKE", "d13") in rebound_events(timeline)
    assert not any(kind == "LOSS_OF_RESPONSE" for kind, _ in rebound_events(timeline))


def test_clinician_entered_hospitalisation_is_relapse_like():
    timeline = phq9_course(
        20,
        [(1, 10)],
        clinical_events=(
            ClinicalEvent(id="e1", kind="hospitalisation_for_depression", occurred=day(12)),
        ),
    )
    assert ("RELAPSE_LIKE", "e1") in rebound_events(timeline)
    assert ("RELAPSE_LIKE", "e1") not in rebound_events(timeline, now=day(11))


def test_loss_of_response_pair_never_spans_a_session():
    base = phq9_course(20, [(1, 9), (3, 15)])
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=(*base.sessions, n2o_session("s2", day(4))),
        responses=(*base.responses, phq9("d6", day(6), 15)),
    )
    assert not any(kind == "LOSS_OF_RESPONSE" for kind, _ in rebound_events(timeline))


def test_alerts_share_one_dedup_key_per_patient_and_kind():
    timeline = phq9_course(20, [(1, 8), (2, 14), (3, 15)])
    candidates = [
        c for c in evaluate_alerts(timeline, DEFAULTS, now=NOW) if c.kind == "REBOUND_CANDIDATE"
    ]
    assert len(candidates) == 2
    assert {c.dedup_key for c in candidates} == {"p1:REBOUND_CANDIDATE"}
    assert len({c.occurrence_key for c in candidates}) == 2
    assert all(c.mergeable for c in candidates)


def test_day_arithmetic_is_in_elapsed_hours():
    assert day(1) - T0 == timedelta(hours=24)
