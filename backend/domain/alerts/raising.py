"""How a rule turns a decision into an `AlertCandidate`: keys, service level and versions are
filled in one way for every rule family."""

from __future__ import annotations

from datetime import datetime

from backend.domain.alerts.candidate import (
    AlertCandidate,
    AlertKind,
    Audience,
    Evidence,
    PatientAction,
    Severity,
)
from backend.domain.alerts.parameters import AlertParameters


def raise_alert(
    *,
    patient_id: str,
    kind: AlertKind,
    severity: Severity,
    trigger: str,
    triggered_at: datetime,
    rule_id: str,
    parameters: AlertParameters,
    evidence: Evidence,
    audience: Audience = "clinician",
    mergeable: bool = True,
    patient_action: PatientAction | None = None,
    hold_next_n2o_session: bool = False,
) -> AlertCandidate:
    """`trigger` identifies this occurrence within its kind (e.g. the response id)."""
    occurrence_key = f"{patient_id}:{kind}:{trigger}"
    mergeable = mergeable and audience == "clinician"
    return AlertCandidate(
        patient_id=patient_id,
        kind=kind,
        severity=severity,
        audience=audience,
        triggered_at=triggered_at,
        dedup_key=f"{patient_id}:{kind}" if mergeable else occurrence_key,
        occurrence_key=occurrence_key,
        mergeable=mergeable,
        rule_id=rule_id,
        parameter_version=parameters.version,
        sla_minutes=parameters.sla_for(severity) if audience == "clinician" else None,
        evidence=evidence,
        patient_action=patient_action,
        hold_next_n2o_session=hold_next_n2o_session,
    )
