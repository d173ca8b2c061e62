"""Suicide items (clinical-spec §5.3): an alert on every positive submission, at the tier the
instrument's safety thresholds give (PHQ-9 item 9: 1 → PRIORITY, ≥2 → URGENT; QIDS-SR16 item 12;
MADRS-S item 9: ≥2 → PRIORITY, ≥4 → URGENT; clinician MADRS item 10, HAM-D item 3).

Never suppressed: each positive submission is its own alert (no merging with earlier ones), and
nothing here waits for a trajectory (§5.3 rules 6 and 7). A skipped suicide item is never imputed:
the patient is re-asked once at once; if the re-ask also leaves it blank, or no re-ask arrives
within `reask_wait_minutes`, a clinician task "suicide item unanswered" is raised (rule 5).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from backend.domain.alerts.candidate import (
    AlertCandidate,
    AnswerEvidence,
    Evidence,
    max_severity,
    score_evidence,
)
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.raising import raise_alert
from backend.domain.alerts.timeline import PatientTimeline, ScoredResponse, in_order

RULE_ID = "suicidality@1.0.0"


def suicidality_alerts(
    timeline: PatientTimeline, parameters: AlertParameters, now: datetime
) -> list[AlertCandidate]:
    responses = [r for r in in_order(timeline.responses) if r.authored <= now]
    reasked = {r.reask_of for r in responses if r.reask_of is not None}
    alerts: list[AlertCandidate] = []
    for response in responses:
        alerts.extend(_positive(timeline, parameters, response))
        alerts.extend(_unanswered(timeline, parameters, response, reasked, now))
    return alerts


def _positive(
    timeline: PatientTimeline, parameters: AlertParameters, response: ScoredResponse
) -> list[AlertCandidate]:
    flags = [f for f in response.safety_flags if f.concern == "suicidality"]
    if not flags:
        return []
    severity = max_severity([f.tier for f in flags])
    return [
        raise_alert(
            patient_id=timeline.patient_id,
            kind="SUICIDALITY",
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
            mergeable=False,
            # The crisis screen comes first on every positive submission (§5.3 rule 2).
            patient_action="show_crisis_resources",
        )
    ]


def _unanswered(
    timeline: PatientTimeline,
    parameters: AlertParameters,
    response: ScoredResponse,
    reasked: set[str],
    now: datetime,
) -> list[AlertCandidate]:
    skipped = tuple(
        i.link_id for i in response.unanswered_safety_items if i.concern == "suicidality"
    )
    if not skipped or response.id in reasked:
        return []
    evidence = Evidence(
        scores=(score_evidence(response, "submission"),),
        measures={"unanswered_items": ",".join(skipped)},
    )
    wait = timedelta(minutes=parameters.suicidality.reask_wait_minutes)
    if response.reask_of is None and now < response.authored + wait:
        return [
            raise_alert(
                patient_id=timeline.patient_id,
                kind="SUICIDE_ITEM_REASK",
                severity="info",
                trigger=response.id,
                triggered_at=response.authored,
                rule_id=RULE_ID,
                parameters=parameters,
                evidence=evidence,
                audience="patient",
                patient_action="reask_suicide_item",
            )
        ]
    return [
        raise_alert(
            patient_id=timeline.patient_id,
            kind="SUICIDE_ITEM_UNANSWERED",
            severity=parameters.suicidality.unanswered_severity,
            trigger=response.id,
            triggered_at=response.authored
            if response.reask_of is not None
            else response.authored + wait,
            rule_id=RULE_ID,
            parameters=parameters,
            evidence=evidence,
            mergeable=False,
        )
    ]
