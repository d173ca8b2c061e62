"""Suicidality (clinical-spec §5.3): an alert on every positive submission, at the tier §5.3
gives. Triggers (rule 1) and tiers (rule 4):

- suicide items, at the tier of the instrument's safety thresholds (PHQ-9 item 9: 1 → PRIORITY,
  ≥2 → URGENT; QIDS-SR16 item 12; MADRS-S item 9: ≥2 → PRIORITY, ≥4 → URGENT; clinician MADRS
  item 10, HAM-D item 3). MADRS-S item 9 of 2-3 is "PRIORITY task only": an alert, but no crisis
  screen (`crisisScreenFrom`);
- any C-SSRS screener "yes", at the tier of its risk level (§1.7): low → PRIORITY, moderate or
  incomplete → URGENT, high (Q4 or Q5, or behaviour within the past 3 months) → EMERGENCY. The
  screener is licensed (§6) and not in the catalogue: a clinic with a licence installs it under
  `CSSRS_INSTRUMENT` with the item ids below, and this rule grades it;
- a patient's free text matched by the clinic's keyword list, at `freeTextSeverity`.

One alert per submission at the highest tier any trigger gives. Never suppressed: each positive
submission is its own alert (no merging with earlier ones), and nothing here waits for a
trajectory (§5.3 rules 6 and 7). A skipped suicide item is never imputed: the patient is re-asked
once at once; if the re-ask also leaves it blank, or no re-ask arrives within
`reask_wait_minutes`, a clinician task "suicide item unanswered" is raised (rule 5).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal

import msgspec

from backend.domain.alerts.candidate import (
    AlertCandidate,
    AnswerEvidence,
    Evidence,
    PatientAction,
    Severity,
    max_severity,
    score_evidence,
)
from backend.domain.alerts.parameters import AlertParameters, SuicidalityParameters
from backend.domain.alerts.raising import raise_alert
from backend.domain.alerts.timeline import ItemValue, PatientTimeline, ScoredResponse, in_order
from backend.domain.safety.keywords import matches_any

RULE_ID = "suicidality@1.1.0"

CSSRS_INSTRUMENT: Final = "c-ssrs-screener"
"""The C-SSRS screener ("recent", LOINC panel 93373-9) when a licensed clinic installs it."""
CSSRS_WISH_DEAD: Final = "cssrs-1"  # 93246-7, past month
CSSRS_THOUGHTS: Final = "cssrs-2"  # 93247-5, past month
CSSRS_METHOD: Final = "cssrs-3"  # 93248-3, asked if Q2 = yes
CSSRS_INTENT: Final = "cssrs-4"  # 93249-1, asked if Q2 = yes
CSSRS_PLAN: Final = "cssrs-5"  # 93250-9, asked if Q2 = yes
CSSRS_BEHAVIOUR: Final = "cssrs-6"  # 93267-3, lifetime
CSSRS_BEHAVIOUR_RECENT: Final = "cssrs-6a"  # 93269-9, asked if Q6 = yes

CssrsRisk = Literal["none", "low", "moderate", "high", "incomplete"]


def cssrs_risk(answers: dict[str, ItemValue]) -> CssrsRisk:
    """The screener's risk level by the Columbia triage rule (clinical-spec §1.7). An unanswered
    question that the answers given make required leaves it "incomplete", unless what was
    answered is already high."""

    def answer(link_id: str) -> bool | None:
        value = answers.get(link_id)
        return None if value is None else bool(value)

    thoughts, behaviour = answer(CSSRS_THOUGHTS), answer(CSSRS_BEHAVIOUR)
    required = [CSSRS_WISH_DEAD, CSSRS_THOUGHTS, CSSRS_BEHAVIOUR]
    if thoughts:
        required += [CSSRS_METHOD, CSSRS_INTENT, CSSRS_PLAN]
    if behaviour:
        required.append(CSSRS_BEHAVIOUR_RECENT)
    if answer(CSSRS_INTENT) or answer(CSSRS_PLAN) or (behaviour and answer(CSSRS_BEHAVIOUR_RECENT)):
        return "high"
    if any(answer(link_id) is None for link_id in required):
        return "incomplete"
    if answer(CSSRS_METHOD) or behaviour:
        return "moderate"
    if answer(CSSRS_WISH_DEAD) or thoughts:
        return "low"
    return "none"


class SuicidalitySignal(msgspec.Struct, frozen=True, kw_only=True):
    """What one submission says about suicidality, and at which tier (no text, only ids)."""

    severity: Severity
    flagged: tuple[AnswerEvidence, ...]
    free_text_items: tuple[str, ...]
    cssrs_risk: CssrsRisk | None
    crisis_screen: bool
    """Whether the patient sees the crisis screen (False only for a "task only" item value)."""

    @property
    def patient_action(self) -> PatientAction | None:
        # The crisis screen comes first on every positive submission (§5.3 rule 2); at
        # EMERGENCY "the patient screen tells the patient to call emergency services now".
        if not self.crisis_screen:
            return None
        return (
            "call_emergency_services_now"
            if self.severity == "emergency"
            else "show_crisis_resources"
        )


def suicidality_signal(
    response: ScoredResponse, parameters: SuicidalityParameters
) -> SuicidalitySignal | None:
    """The §5.3 triggers in one submission, or None when there is none."""
    flags = [f for f in response.safety_flags if f.concern == "suicidality"]
    tiers: list[Severity] = [f.tier for f in flags]
    risk: CssrsRisk | None = None
    if response.instrument_id == CSSRS_INSTRUMENT:
        risk = cssrs_risk(response.answers)
        if risk != "none":
            tiers.append(parameters.cssrs_tiers[risk])
    keywords = parameters.free_text_keywords
    matched = tuple(t.link_id for t in response.free_text if matches_any(t.text, keywords))
    if matched:
        tiers.append(parameters.free_text_severity)
    if not tiers:
        return None
    screen_from = parameters.crisis_screen_from
    screen = (
        len(tiers) > len(flags)  # a C-SSRS "yes" or a keyword match always shows it
        or any(float(f.value) >= screen_from.get(f.link_id, 0) for f in flags)
    )
    flagged = [
        AnswerEvidence(response_id=response.id, link_id=f.link_id, value=f.value) for f in flags
    ]
    if risk is not None and risk != "none":
        flagged += [
            AnswerEvidence(response_id=response.id, link_id=link_id, value=value)
            for link_id, value in sorted(response.answers.items())
            if value is True
        ]
    return SuicidalitySignal(
        severity=max_severity(tiers),
        flagged=tuple(flagged),
        free_text_items=matched,
        cssrs_risk=risk,
        crisis_screen=screen,
    )


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
    signal = suicidality_signal(response, parameters.suicidality)
    if signal is None:
        return []
    measures: dict[str, bool | int | float | str | None] = {}
    if signal.free_text_items:
        # Which items matched, never the words: the evidence says "read the patient's answer".
        measures["free_text_keyword_match"] = ",".join(signal.free_text_items)
    if signal.cssrs_risk is not None:
        measures["cssrs_risk"] = signal.cssrs_risk
    return [
        raise_alert(
            patient_id=timeline.patient_id,
            kind="SUICIDALITY",
            severity=signal.severity,
            trigger=response.id,
            triggered_at=response.authored,
            rule_id=RULE_ID,
            parameters=parameters,
            evidence=Evidence(
                scores=(score_evidence(response, "submission"),),
                answers=signal.flagged,
                measures=measures,
            ),
            mergeable=False,
            patient_action=signal.patient_action,
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
