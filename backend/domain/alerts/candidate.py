"""What a rule decides: an alert candidate, with its evidence, for the service to store.

The engine is stateless: it re-reads the whole timeline each time, so the same trigger comes back
on every evaluation. Two keys let the service act once per trigger:

- `occurrence_key` names one trigger (this rule, these scores). The service records the keys it has
  seen and ignores a repeat; a new key is a new trigger.
- `dedup_key` names the alert a trigger belongs to: one open alert per patient and kind, later
  triggers attach to it as new evidence. Suicidality candidates and patient-facing actions have a
  dedup key per occurrence (`mergeable=False`): each positive submission is its own alert and is
  never merged away (clinical-spec §5.3 rule 6).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from backend.domain.alerts.timeline import ItemValue, ScoredResponse

Severity = Literal["info", "routine", "priority", "high", "urgent", "emergency"]
"""The spec's tiers (§5) plus "info" for dashboard-only events (§2.4 REBOUND_CANDIDATE)."""

SEVERITY_RANK: dict[Severity, int] = {
    "info": 0,
    "routine": 1,
    "priority": 2,
    "high": 3,
    "urgent": 4,
    "emergency": 5,
}

AlertKind = Literal[
    # §2.4 rebound and relapse
    "REBOUND_CANDIDATE",
    "REBOUND_CONFIRMED",
    "FULL_RETURN",
    "LOSS_OF_RESPONSE",
    "RELAPSE_LIKE",
    "SEVERE_SCORE",
    "NON_RESPONSE_SESSION",
    # §5.3 suicidality
    "SUICIDALITY",
    "SUICIDE_ITEM_REASK",
    "SUICIDE_ITEM_UNANSWERED",
    # §5.1 nitrous oxide
    "N2O_NEURO_SYMPTOMS",
    "MNSI_NEUROPATHY",
    "HAEMATOLOGICAL_MONITORING_DUE",
    # §5.2 ketamine / esketamine
    "KETAMINE_BLADDER",
    "KETAMINE_MISUSE",
    "PERSISTENT_DISSOCIATION",
    "PSYCHOTIC_SYMPTOMS",
    "BLOOD_PRESSURE",
    "SEDATION",
    "COGNITIVE_PROBLEMS",
    # §4.2 missed check-ins
    "CHECK_IN_REMINDER",
    "MISSED_CHECK_IN",
    # The patient stopped monitoring from the app (not a spec rule: the care team must know)
    "MONITORING_WITHDRAWN",
]

Audience = Literal["clinician", "patient"]

PatientAction = Literal[
    "show_crisis_resources",
    "reask_suicide_item",
    "advise_same_day_medical_assessment",
    "call_emergency_services_now",
    "remind_check_in",
]
"""What the patient's app shows at once. The crisis screen's content (resources by locale) comes
from `backend.domain.safety.crisis`; the rules only say that it must be shown."""


class ScoreEvidence(msgspec.Struct, frozen=True, kw_only=True):
    response_id: str
    role: str
    """Why this score matters: "reference", "nadir", "score", "previous", ..."""
    trajectory_key: str
    authored: datetime
    total: int | None
    prorated: bool
    partial: bool | None = None
    """Some scored item was unanswered (`ScoredResponse.partial`), prorated or not, so the total
    may mislead a reviewer. None: evidence recorded before this field existed (not known)."""


class AnswerEvidence(msgspec.Struct, frozen=True, kw_only=True):
    response_id: str
    link_id: str
    value: ItemValue


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """Which data raised the alert. Scores and answers are PHI: the service encrypts this."""

    scores: tuple[ScoreEvidence, ...] = ()
    answers: tuple[AnswerEvidence, ...] = ()
    session_ids: tuple[str, ...] = ()
    check_in_ids: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    measures: dict[str, bool | int | float | str | None] = msgspec.field(default_factory=dict)
    """Derived figures (gain, rise, fraction, minutes...) so a reviewer sees the arithmetic."""


class AlertCandidate(msgspec.Struct, frozen=True, kw_only=True):
    patient_id: str
    kind: AlertKind
    severity: Severity
    audience: Audience
    triggered_at: datetime
    """When the triggering data arose (a score's authored time, a session start, a deadline)."""
    dedup_key: str
    occurrence_key: str
    mergeable: bool
    rule_id: str
    parameter_version: str
    sla_minutes: int | None
    """Acknowledge within this many minutes (None: no service level, e.g. dashboard info)."""
    evidence: Evidence
    patient_action: PatientAction | None = None
    hold_next_n2o_session: bool = False
    """The patient's next N2O session must not start until a clinician clears it (§5.1)."""


def score_evidence(response: ScoredResponse, role: str) -> ScoreEvidence:
    return ScoreEvidence(
        response_id=response.id,
        role=role,
        trajectory_key=response.trajectory_key,
        authored=response.authored,
        total=response.total,
        prorated=response.prorated,
        partial=response.partial,
    )


def max_severity(severities: list[Severity]) -> Severity:
    return max(severities, key=SEVERITY_RANK.__getitem__)
