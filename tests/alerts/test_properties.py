"""Invariants of the engine, over generated timelines (hypothesis)."""

import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import build_parameters, load_parameters, read_document
from backend.domain.alerts.timeline import MissedCheckIn, PatientTimeline
from tests.alerts.builders import T0, day, n2o_session, phq9

DEFAULTS = load_parameters()
NOW = day(90)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRAJECTORY_KINDS = {
    "REBOUND_CANDIDATE",
    "REBOUND_CONFIRMED",
    "FULL_RETURN",
    "LOSS_OF_RESPONSE",
    "RELAPSE_LIKE",
}

session_days = st.lists(st.sampled_from([3.5, 7, 10, 14, 21, 28, 35]), max_size=2, unique=True)
score_times = st.lists(st.floats(min_value=0.1, max_value=50), min_size=1, max_size=9, unique=True)


@st.composite
def timelines(draw, *, never_below_baseline=False):
    baseline = draw(st.integers(min_value=6, max_value=24))
    sessions = [n2o_session("s0", T0)] + [
        n2o_session(f"s{i + 1}", day(d)) for i, d in enumerate(sorted(draw(session_days)))
    ]
    responses = [phq9("b0", day(-1), baseline)]
    for i, d in enumerate(sorted(draw(score_times))):
        low = baseline if never_below_baseline else 0
        total = draw(st.integers(min_value=low, max_value=24))
        responses.append(phq9(f"r{i}", day(d), total))
    missed = [
        MissedCheckIn(id=f"c{i}", due=day(d))
        for i, d in enumerate(draw(st.lists(st.floats(0, 60), max_size=3, unique=True)))
    ]
    return PatientTimeline(
        patient_id="p1",
        sessions=tuple(sessions),
        responses=tuple(responses),
        missed_check_ins=tuple(missed),
    )


@SETTINGS
@given(timelines(never_below_baseline=True))
def test_a_patient_who_never_improves_never_gets_a_rebound_alert(timeline):
    kinds = {c.kind for c in evaluate_alerts(timeline, DEFAULTS, now=NOW)}
    assert not kinds & TRAJECTORY_KINDS


@SETTINGS
@given(timelines(), st.integers(1, 3), st.floats(0.1, 50), st.sampled_from([0, 5, 10, 20]))
def test_a_positive_suicide_item_always_alerts(timeline, item9, when, total):
    positive = phq9("positive", day(when), max(total, item9), item9=item9)
    timeline = PatientTimeline(
        patient_id=timeline.patient_id,
        sessions=timeline.sessions,
        responses=(*timeline.responses, positive),
        missed_check_ins=timeline.missed_check_ins,
    )
    found = evaluate_alerts(timeline, DEFAULTS, now=NOW)
    [alert] = [c for c in found if c.kind == "SUICIDALITY"]
    assert alert.occurrence_key.endswith(":positive")
    assert alert.severity == ("priority" if item9 == 1 else "urgent")


# (document path, amount): each change makes a criterion stricter.
STRICTER = {
    "minRiseAbs": 1,
    "minFraction": 0.1,
    "minGainAbs": 1,
    "minGainRel": 0.1,
    "severeThreshold": 1,
    "relapseThreshold": 1,
    "confirmMinGapH": 12,
    "confirmMaxGapD": -3,
    "fullReturnMargin": -1,
    "remissionAtOrBelow": -1,
    "relapseMinGapD": 1,
    "relapseMaxGapD": -3,
}


def _occurrences(candidates):
    # A stricter candidate rule can turn a CONFIRMED into a CANDIDATE (its predecessor no longer
    # qualifies), so the two rebound levels are compared as one; NON_RESPONSE_SESSION is the
    # complement of eligibility and so grows when eligibility is stricter, by definition.
    rename = {"REBOUND_CONFIRMED": "REBOUND", "REBOUND_CANDIDATE": "REBOUND"}
    return {
        (rename.get(c.kind, c.kind), c.occurrence_key.rsplit(":", 1)[-1])
        for c in candidates
        if c.kind != "NON_RESPONSE_SESSION"
    }


@SETTINGS
@given(timelines(), st.sampled_from(sorted(STRICTER)), st.integers(1, 3))
def test_a_stricter_threshold_never_adds_alerts(timeline, name, steps):
    base = read_document("default")
    value = base["rebound"]["defaults"][name] + STRICTER[name] * steps
    if name == "minFraction":
        value = min(value, 1.0)
    if name == "minGainRel":
        value = min(value, 1.0)
    override = {"parameterSet": "stricter", "version": "1", "rebound": {"defaults": {name: value}}}
    stricter = build_parameters(base, (override,))
    before = _occurrences(evaluate_alerts(timeline, DEFAULTS, now=NOW))
    after = _occurrences(evaluate_alerts(timeline, stricter, now=NOW))
    assert after <= before
    confirmed = lambda cs: {c.occurrence_key for c in cs if c.kind == "REBOUND_CONFIRMED"}  # noqa: E731
    assert confirmed(evaluate_alerts(timeline, stricter, now=NOW)) <= confirmed(
        evaluate_alerts(timeline, DEFAULTS, now=NOW)
    )


@SETTINGS
@given(timelines(), st.integers(0, 2**32 - 1), st.floats(-1, 60))
def test_evaluation_is_deterministic_and_ignores_input_order(timeline, seed, now_day):
    rng = random.Random(seed)
    shuffled = PatientTimeline(
        patient_id=timeline.patient_id,
        sessions=tuple(rng.sample(timeline.sessions, len(timeline.sessions))),
        responses=tuple(rng.sample(timeline.responses, len(timeline.responses))),
        missed_check_ins=tuple(
            rng.sample(timeline.missed_check_ins, len(timeline.missed_check_ins))
        ),
    )
    now = day(now_day)
    first = evaluate_alerts(timeline, DEFAULTS, now=now)
    assert evaluate_alerts(timeline, DEFAULTS, now=now) == first
    assert evaluate_alerts(shuffled, DEFAULTS, now=now) == first


@SETTINGS
@given(timelines())
def test_every_candidate_names_its_rule_and_parameter_version(timeline):
    for candidate in evaluate_alerts(timeline, DEFAULTS, now=NOW):
        assert "@" in candidate.rule_id
        assert candidate.parameter_version == DEFAULTS.version
        assert candidate.triggered_at <= NOW + timedelta(0)
