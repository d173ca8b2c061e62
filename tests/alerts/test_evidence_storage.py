"""Evidence is stored encrypted as msgpack and read back for the clinician: every rule family's
evidence must survive the round trip unchanged (a bool measure once came back as an error)."""

from datetime import timedelta

import msgspec

from backend.domain.alerts.candidate import AlertCandidate, Evidence
from backend.domain.alerts.engine import evaluate_alerts
from backend.domain.alerts.parameters import load_parameters
from backend.domain.alerts.timeline import MissedCheckIn, PatientTimeline
from tests.alerts.builders import T0, day, n2o_session, response
from tests.alerts.cohort import simulate_cohort

DEFAULTS = load_parameters()


def _round_trip(candidates: list[AlertCandidate]) -> None:
    for candidate in candidates:
        stored = msgspec.msgpack.encode(candidate.evidence)
        assert msgspec.msgpack.decode(stored, type=Evidence) == candidate.evidence, candidate.kind


def test_rebound_evidence_of_a_cohort_round_trips() -> None:
    kinds = set()
    for patient in simulate_cohort(200, seed=7):
        candidates = evaluate_alerts(patient.timeline, DEFAULTS, now=day(40))
        kinds |= {c.kind for c in candidates}
        _round_trip(candidates)
    assert {"REBOUND_CANDIDATE", "REBOUND_CONFIRMED", "NON_RESPONSE_SESSION"} <= kinds


def test_safety_and_missed_check_in_evidence_round_trips() -> None:
    neuro = {f"NEURO-{n}": n in (1, 2) for n in range(1, 11)}
    neuro |= {"NEURO-RAPID": True, "NEURO-BOTH-SIDES": False}
    phq9 = {f"phq9-{n}": 1 for n in range(1, 10)}
    timeline = PatientTimeline(
        patient_id="p1",
        sessions=(n2o_session("s1", T0), n2o_session("s2", T0 + timedelta(days=2))),
        responses=(
            response("n2o-neuro", "r1", day(1), neuro),
            response("phq9", "r2", day(1.5), phq9),
        ),
        missed_check_ins=(MissedCheckIn(id="c1", due=day(2.5), session_id="s2"),),
        b12_risk_factors=("b12-5",),
    )
    candidates = evaluate_alerts(timeline, DEFAULTS, now=day(6))
    assert {
        "N2O_NEURO_SYMPTOMS",
        "HAEMATOLOGICAL_MONITORING_DUE",
        "SUICIDALITY",
        "CHECK_IN_REMINDER",
        "MISSED_CHECK_IN",
    } <= {c.kind for c in candidates}
    _round_trip(candidates)
