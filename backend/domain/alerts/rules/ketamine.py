"""Ketamine and esketamine red flags (clinical-spec §5.2).

Tiers come from the instruments' safety thresholds: blood in urine or severe bladder pain HIGH,
other bladder symptoms ROUTINE (review before the next dose); any misuse or craving item HIGH;
hallucinations or paranoia URGENT; hypertensive symptoms URGENT with "call emergency services
now" on the patient's screen; a clinic-entered blood pressure ≥180 systolic or ≥110 diastolic
URGENT (above 140/90 ROUTINE); hard to stay awake at home URGENT. These flags are raised whatever
the modality: a safety answer on a shared post-session form is never ignored.

The patient's own home reading and "new memory or concentration problems over weeks" are read
from the answers against the alert parameters (`ketamine.homeBp*`, `ketamine.cognition*`): home
blood pressure at or above either threshold (180/110 [P]) is URGENT, cognition ROUTINE. For a
home reading §5.2 asks URGENT only; "call emergency services now" is its advice for the
hypertensive symptoms, which the side-effect checklist asks, so the reading alone shows the
patient nothing more.

Dissociation is expected to resolve by about 1.5-2 h (TRANSFORM-2), so "feeling unreal or
detached" counts only after a ketamine or esketamine session: from 4 h after the session ended it
needs review before the next dose (ROUTINE [P]); from the next morning (12 h [P]) it is HIGH.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from backend.domain.alerts.candidate import (
    AlertCandidate,
    AlertKind,
    AnswerEvidence,
    Evidence,
    PatientAction,
    Severity,
    max_severity,
    score_evidence,
)
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.raising import raise_alert
from backend.domain.alerts.timeline import (
    ItemValue,
    PatientTimeline,
    ScoredResponse,
    in_order,
    sessions_in_order,
)

RULE_ID = "ketamine@1.1.0"

KIND_BY_CONCERN: dict[str, AlertKind] = {
    "ketamine_bladder": "KETAMINE_BLADDER",
    "ketamine_misuse": "KETAMINE_MISUSE",
    "psychotic_symptoms": "PSYCHOTIC_SYMPTOMS",
    "blood_pressure": "BLOOD_PRESSURE",
    "sedation": "SEDATION",
}

BLOOD_PRESSURE_READINGS = "blood-pressure"
"""The instrument of numeric readings; blood-pressure flags from any other form are symptoms."""


def _on_answers(
    timeline: PatientTimeline,
    parameters: AlertParameters,
    response: ScoredResponse,
    *,
    kind: AlertKind,
    severity: Severity,
    answers: Iterable[tuple[str, ItemValue]],
    session_ids: tuple[str, ...] = (),
    measures: dict[str, bool | int | float | str | None] | None = None,
    patient_action: PatientAction | None = None,
) -> AlertCandidate:
    """An alert this response's answers raised: its evidence is the response's score and those
    answers (every red flag of this module is one response's)."""
    return raise_alert(
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
                AnswerEvidence(response_id=response.id, link_id=link_id, value=value)
                for link_id, value in answers
            ),
            session_ids=session_ids,
            measures=measures or {},
        ),
        patient_action=patient_action,
    )


def ketamine_alerts(
    timeline: PatientTimeline, parameters: AlertParameters, now: datetime
) -> list[AlertCandidate]:
    alerts: list[AlertCandidate] = []
    for response in in_order(timeline.responses):
        if response.authored > now:
            continue
        alerts.extend(_flagged(timeline, parameters, response))
        alerts.extend(_persistent_dissociation(timeline, parameters, response))
        alerts.extend(_home_blood_pressure(timeline, parameters, response))
        alerts.extend(_cognition(timeline, parameters, response))
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
            _on_answers(
                timeline,
                parameters,
                response,
                kind=kind,
                severity=severity,
                answers=((f.link_id, f.value) for f in flags),
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
        _on_answers(
            timeline,
            parameters,
            response,
            kind="PERSISTENT_DISSOCIATION",
            severity=severity,
            answers=[(rules.dissociation_item, value)],
            session_ids=(session.id,),
            measures={"hours_after_session": round(hours, 2)},
        )
    ]


def _home_blood_pressure(
    timeline: PatientTimeline, parameters: AlertParameters, response: ScoredResponse
) -> list[AlertCandidate]:
    rules = parameters.ketamine
    thresholds = {
        rules.home_bp_systolic_item: rules.home_bp_systolic_at_least,
        rules.home_bp_diastolic_item: rules.home_bp_diastolic_at_least,
    }
    reading = {
        link_id: value
        for link_id in thresholds
        if isinstance(value := response.answers.get(link_id), int | float)
        and not isinstance(value, bool)
    }
    if not any(value >= thresholds[link_id] for link_id, value in reading.items()):
        return []
    return [
        _on_answers(
            timeline,
            parameters,
            response,
            kind="BLOOD_PRESSURE",
            severity=rules.home_bp_severity,
            # Both numbers, so the reviewer sees the whole reading, not only the high one.
            answers=reading.items(),
            measures={
                "systolic_at_least": rules.home_bp_systolic_at_least,
                "diastolic_at_least": rules.home_bp_diastolic_at_least,
            },
        )
    ]


def _cognition(
    timeline: PatientTimeline, parameters: AlertParameters, response: ScoredResponse
) -> list[AlertCandidate]:
    rules = parameters.ketamine
    if response.answers.get(rules.cognition_item) is not True:
        return []
    return [
        _on_answers(
            timeline,
            parameters,
            response,
            kind="COGNITIVE_PROBLEMS",
            severity=rules.cognition_severity,
            answers=[(rules.cognition_item, True)],
        )
    ]
