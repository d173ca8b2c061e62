"""Ketamine and esketamine red flags (clinical-spec §5.2).

Tiers come from the instruments' safety thresholds: blood in urine or severe bladder pain HIGH,
other bladder symptoms ROUTINE (review before the next dose); any misuse or craving item HIGH;
hallucinations or paranoia URGENT; hypertensive symptoms URGENT with "call emergency services
now" on the patient's screen; home blood pressure ≥180 systolic or ≥110 diastolic URGENT (above
140/90 ROUTINE); hard to stay awake at home URGENT. These flags are raised whatever the modality:
a safety answer on a shared post-session form is never ignored.

Dissociation is expected to resolve by about 1.5-2 h (TRANSFORM-2), so "feeling unreal or
detached" counts only after a ketamine or esketamine session: from 4 h after the session ended it
needs review before the next dose (ROUTINE [P]); from the next morning (12 h [P]) it is HIGH.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from backend.domain.alerts.candidate import (
    AlertCandidate,
    AlertKind,
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
    in_order,
    sessions_in_order,
)

RULE_ID = "ketamine@1.0.0"

KIND_BY_CONCERN: dict[str, AlertKind] = {
    "ketamine_bladder": "KETAMINE_BLADDER",
    "ketamine_misuse": "KETAMINE_MISUSE",
    "psychotic_symptoms": "PSYCHOTIC_SYMPTOMS",
    "blood_pressure": "BLOOD_PRESSURE",
    "sedation": "SEDATION",
}

BLOOD_PRESSURE_READINGS = "blood-pressure"
"""The instrument of numeric readings; blood-pressure flags from any other form are symptoms."""


def ketamine_alerts(
    timeline: PatientTimeline, parameters: AlertParameters, now: datetime
) -> list[AlertCandidate]:
    alerts: list[AlertCandidate] = []
    for response in in_order(timeline.responses):
        if response.authored > now:
            continue
        alerts.extend(_flagged(timeline, parameters, response))
        alerts.extend(_persistent_dissociation(timeline, parameters, response))
    return alerts


def _flagged(
    timeline: PatientTimeline, parameters: AlertParameters, response: ScoredResponse
) -> list[AlertCandidate]:
    alerts = []
    for concern, kind in KIND_BY_CONCERN.items():
        flags = [f for f in response.safety_flags if f.concern == concern]
        if not flags:
            continue
        severity = max_severity([f.tier for f in flags])
        symptom = concern == "blood_pressure" and response.instrument_id != BLOOD_PRESSURE_READINGS
        alerts.append(
            raise_alert(
                patient_id=timeline.patient_id,
                kind=kind,
                severity=severity,
                trigger=response.id,
                triggered_at=response.authored,
                rule_id=RULE_ID,
                parameters=parameters,
                evidence=Evidence(
                    scores=(score_evidence(response, "submission"),),
                    answers=tuple(
                        AnswerEvidence(response_id=response.id, link_id=f.link_id, value=f.value)
                        for f in flags
                    ),
                ),
                patient_action="call_emergency_services_now" if symptom else None,
            )
        )
    return alerts


def _persistent_dissociation(
    timeline: PatientTimeline, parameters: AlertParameters, response: ScoredResponse
) -> list[AlertCandidate]:
    rules = parameters.ketamine
    value = response.answers.get(rules.dissociation_item)
    if isinstance(value, bool) or value is None or value < rules.dissociation_min_value:
        return []
    before = [s for s in sessions_in_order(timeline.sessions) if s.start <= response.authored]
    if not before or before[-1].modality not in ("ketamine_iv", "esketamine"):
        return []
    session = before[-1]
    ended = session.end or session.start
    hours = (response.authored - ended) / timedelta(hours=1)
    severity: Severity
    if hours >= rules.dissociation_next_day_after_hours:
        severity = rules.dissociation_next_day_severity
    elif hours >= rules.dissociation_review_after_hours:
        severity = rules.dissociation_review_severity
    else:
        return []
    return [
        raise_alert(
            patient_id=timeline.patient_id,
            kind="PERSISTENT_DISSOCIATION",
            severity=severity,
            trigger=response.id,
            triggered_at=response.authored,
            rule_id=RULE_ID,
            parameters=parameters,
            evidence=Evidence(
                scores=(score_evidence(response, "submission"),),
                answers=(
                    AnswerEvidence(
                        response_id=response.id, link_id=rules.dissociation_item, value=value
                    ),
                ),
                session_ids=(session.id,),
                measures={"hours_after_session": round(hours, 2)},
            ),
        )
    ]
