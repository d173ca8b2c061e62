"""`evaluate_alerts`: every rule family over one patient's timeline, as of `now`.

Pure and deterministic: no I/O, no clock (the caller passes `now`), and the result does not
depend on the order of the timeline's lists. Data authored after `now` is ignored. The service
calls this in the transaction that stores a submission (and from the timers for time-driven
rules: missed check-ins, re-ask deadlines) and stores candidates whose `occurrence_key` is new.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from backend.domain.alerts.candidate import SEVERITY_RANK, AlertCandidate
from backend.domain.alerts.parameters import AlertParameters
from backend.domain.alerts.rules.ketamine import ketamine_alerts
from backend.domain.alerts.rules.missed import missed_check_in_alerts
from backend.domain.alerts.rules.n2o_neuro import n2o_neuro_alerts
from backend.domain.alerts.rules.rebound import rebound_alerts
from backend.domain.alerts.rules.suicidality import CSSRS_INSTRUMENT, suicidality_alerts
from backend.domain.alerts.timeline import PatientTimeline
from questionnaires.model import Instrument

Rule = Callable[[PatientTimeline, AlertParameters, datetime], list[AlertCandidate]]

RULE_FAMILIES: tuple[Rule, ...] = (
    suicidality_alerts,
    n2o_neuro_alerts,
    ketamine_alerts,
    rebound_alerts,
    missed_check_in_alerts,
)


def reads_answers(instrument: Instrument, parameters: AlertParameters) -> bool:
    """Whether some rule reads single answers of this instrument's responses, beyond what their
    score carries (total, proration, safety flags, unanswered safety items).

    The rules that do: C-SSRS triage and the free-text keywords (suicidality), the N2O
    checklist's follow-up and rapid-progression items (any instrument with an N2O-neurology
    safety item), the ketamine dissociation, home blood pressure and cognition items. A
    timeline may leave the answers of other instruments out (`history`: a long course is then
    read without decrypting them), which `tests/alerts/test_answers_read.py` proves changes no
    rule's result.
    """
    link_ids = {item.link_id for item in instrument.items}
    return (
        instrument.id == CSSRS_INSTRUMENT
        or any(item.type == "text" for item in instrument.items)
        or any(item.concern == "n2o_neurology" for item in instrument.safety_items)
        or any(link_id.startswith("NEURO-") for link_id in link_ids)
        or parameters.n2o_neuro.rapid_progression_item in link_ids
        or parameters.ketamine.dissociation_item in link_ids
        or parameters.ketamine.home_bp_systolic_item in link_ids
        or parameters.ketamine.home_bp_diastolic_item in link_ids
        or parameters.ketamine.cognition_item in link_ids
    )


def evaluate_alerts(
    timeline: PatientTimeline, parameters: AlertParameters, *, now: datetime
) -> list[AlertCandidate]:
    """All alert candidates the timeline supports at `now`, most severe first."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    candidates = [c for rule in RULE_FAMILIES for c in rule(timeline, parameters, now)]
    return sorted(
        candidates,
        key=lambda c: (-SEVERITY_RANK[c.severity], c.triggered_at, c.kind, c.occurrence_key),
    )


def holds_next_n2o_session(candidates: list[AlertCandidate]) -> bool:
    """Whether any candidate puts the patient's next N2O session on hold (§5.1)."""
    return any(c.hold_next_n2o_session for c in candidates)
