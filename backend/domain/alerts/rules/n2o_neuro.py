"""Nitrous oxide and functional vitamin B12 deficiency (clinical-spec §5.1).

- N2O-NEURO checklist: each yes has its tier in the instrument file (URGENT: fall, leg weakness,
  bladder/bowel/erection, confusion; HIGH: paraesthesia, unsteadiness, Lhermitte's, clumsy hands;
  ROUTINE: signs of anaemia). Any HIGH item with rapid progression, or at least two HIGH items,
  escalates to URGENT. A patient with any B12 risk factor is raised one step (by default
  ROUTINE → HIGH, HIGH → URGENT): subclinical deficiency is how a single exposure has caused
  myelopathy (medicinal N2O leaflet). URGENT advises same-day medical assessment.
- MNSI-Q: a rise of ≥2 from the course baseline, or a total ≥4, is HIGH.
- HIGH and above put the next N2O session on hold until a clinician clears it, and make
  haematological monitoring due ("at any neurological red flag").
- Exposure: monitoring is due when N2O use reaches 24 h in a rolling 28 days or two sessions start
  less than 4 days apart (Entonox SmPC), counting planned sessions so that monitoring is in place
  before the exposure; and before the first session when any B12 risk factor is present.
"""

from __future__ import annotations

from datetime import datetime

from backend.domain.alerts.candidate import (
    SEVERITY_RANK,
    AlertCandidate,
    AnswerEvidence,
    Evidence,
    Severity,
    max_severity,
    score_evidence,
)
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.raising import raise_alert
from backend.domain.alerts.timeline import (
    PatientTimeline,
    ScoredResponse,
    course_baseline,
    in_order,
    n2o_exposure,
    sessions_in_order,
)

RULE_ID = "n2o-neuro@1.0.0"


def n2o_neuro_alerts(
    timeline: PatientTimeline, parameters: AlertParameters, now: datetime
) -> list[AlertCandidate]:
    responses = [r for r in in_order(timeline.responses) if r.authored <= now]
    alerts: list[AlertCandidate] = []
    for response in responses:
        alerts.extend(_checklist(timeline, parameters, response))
    alerts.extend(_mnsi(timeline, parameters, responses))
    alerts.extend(_exposure(timeline, parameters, now))
    return alerts


def _at_or_above(severity: Severity, floor: Severity) -> bool:
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[floor]


def _red_flag(
    timeline: PatientTimeline,
    parameters: AlertParameters,
    response: ScoredResponse,
    kind: str,
    severity: Severity,
    evidence: Evidence,
) -> list[AlertCandidate]:
    rules = parameters.n2o_neuro
    hold = _at_or_above(severity, rules.hold_at_or_above)
    alerts = [
        raise_alert(
            patient_id=timeline.patient_id,
            kind="N2O_NEURO_SYMPTOMS" if kind == "checklist" else "MNSI_NEUROPATHY",
            severity=severity,
            trigger=response.id,
            triggered_at=response.authored,
            rule_id=RULE_ID,
            parameters=parameters,
            evidence=evidence,
            patient_action="advise_same_day_medical_assessment"
            if _at_or_above(severity, "urgent")
            else None,
            hold_next_n2o_session=hold,
        )
    ]
    if _at_or_above(severity, rules.labs_at_or_above):
        alerts.append(
            raise_alert(
                patient_id=timeline.patient_id,
                kind="HAEMATOLOGICAL_MONITORING_DUE",
                severity=rules.monitoring_severity,
                trigger=f"red-flag:{response.id}",
                triggered_at=response.authored,
                rule_id=RULE_ID,
                parameters=parameters,
                evidence=Evidence(
                    scores=(score_evidence(response, "red_flag"),),
                    measures={"reason": "neurological_red_flag"},
                ),
            )
        )
    return alerts


def _checklist(
    timeline: PatientTimeline, parameters: AlertParameters, response: ScoredResponse
) -> list[AlertCandidate]:
    rules = parameters.n2o_neuro
    flags = [f for f in response.safety_flags if f.concern == "n2o_neurology"]
    if not flags:
        return []
    severity = max_severity([f.tier for f in flags])
    high = sum(1 for f in flags if f.tier == "high")
    rapid = response.answers.get(rules.rapid_progression_item) is True
    escalated = high >= rules.high_items_for_urgent or (high >= 1 and rapid)
    if escalated:
        severity = max_severity([severity, "urgent"])
    raised = bool(timeline.b12_risk_factors)
    if raised:
        severity = rules.risk_factor_raise.get(severity, severity)
    answers = [
        AnswerEvidence(response_id=response.id, link_id=f.link_id, value=f.value) for f in flags
    ]
    for follow_up in sorted(response.answers):
        if follow_up not in {f.link_id for f in flags} and follow_up.startswith("NEURO-"):
            value = response.answers[follow_up]
            answers.append(AnswerEvidence(response_id=response.id, link_id=follow_up, value=value))
    evidence = Evidence(
        scores=(score_evidence(response, "checklist"),),
        answers=tuple(answers),
        measures={
            "high_items": high,
            "rapid_progression": rapid,
            "escalated": escalated,
            "b12_risk_factors": len(timeline.b12_risk_factors),
        },
    )
    return _red_flag(timeline, parameters, response, "checklist", severity, evidence)


def _mnsi(
    timeline: PatientTimeline, parameters: AlertParameters, responses: list[ScoredResponse]
) -> list[AlertCandidate]:
    rules = parameters.n2o_neuro
    key = rules.mnsi_trajectory
    baseline = course_baseline(timeline, key, within_days=rules.mnsi_baseline_within_days)
    alerts = []
    for response in responses:
        if response.trajectory_key != key or response.total is None:
            continue
        rise = None
        if baseline is not None and response.authored > baseline.authored:
            rise = response.total - baseline.total
        if response.total < rules.mnsi_total_at_least and (
            rise is None or rise < rules.mnsi_rise_from_baseline
        ):
            continue
        evidence = Evidence(
            scores=(score_evidence(response, "score"),),
            measures={
                "total": response.total,
                "baseline": None if baseline is None else baseline.total,
                "rise": rise,
            },
        )
        alerts.extend(
            _red_flag(timeline, parameters, response, "mnsi", rules.mnsi_severity, evidence)
        )
    return alerts


def _exposure(
    timeline: PatientTimeline, parameters: AlertParameters, now: datetime
) -> list[AlertCandidate]:
    rules = parameters.n2o_neuro
    alerts = []
    sessions = {s.id: s for s in timeline.sessions}
    for summary in n2o_exposure(timeline.sessions, rolling_days=rules.exposure_rolling_days):
        gap = summary.hours_since_previous_session
        too_long = summary.rolling_minutes >= rules.exposure_limit_hours * 60
        too_close = gap is not None and gap < rules.min_interval_days * 24
        if not (too_long or too_close):
            continue
        start = sessions[summary.session_id].start
        alerts.append(
            raise_alert(
                patient_id=timeline.patient_id,
                kind="HAEMATOLOGICAL_MONITORING_DUE",
                severity=rules.monitoring_severity,
                trigger=f"exposure:{summary.session_id}",
                triggered_at=min(start, now),
                rule_id=RULE_ID,
                parameters=parameters,
                evidence=Evidence(
                    session_ids=(summary.session_id,),
                    measures={
                        "reason": "cumulative_exposure" if too_long else "sessions_too_close",
                        "rolling_minutes": summary.rolling_minutes,
                        "rolling_days": summary.rolling_days,
                        "hours_since_previous_session": gap,
                    },
                ),
            )
        )
    n2o = [s for s in sessions_in_order(timeline.sessions) if s.modality == "n2o"]
    if n2o and timeline.b12_risk_factors:
        first = n2o[0]
        alerts.append(
            raise_alert(
                patient_id=timeline.patient_id,
                kind="HAEMATOLOGICAL_MONITORING_DUE",
                severity=rules.monitoring_severity,
                trigger=f"risk-factors:{first.id}",
                triggered_at=min(first.start, now),
                rule_id=RULE_ID,
                parameters=parameters,
                evidence=Evidence(
                    session_ids=(first.id,),
                    measures={
                        "reason": "b12_risk_factors",
                        "risk_factors": ",".join(sorted(timeline.b12_risk_factors)),
                    },
                ),
            )
        )
    return alerts
