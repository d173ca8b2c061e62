"""Alert thresholds and defaults as versioned data (`parameters/*.json`).

`parameters/default.json` carries the spec's defaults (clinical-spec §2.4 table and JSON block,
§4.2, §5.1-§5.3). Rebound parameters are given per trajectory key, which names one instrument
with one recall window ("phq9-2w" is the spec's "PHQ-9/2w"); a key absent from `trajectories`
is never used for rebound detection (PHQ-2 is a screen only, §1.2). `phq9-24h` (the labelled,
non-validated short-recall variant) gets relative criteria only, like MADRS-S: the PHQ-9 MCID
and reliable-change figures were measured on the 2-week form [P].

Clinic override rule: an override is a document of the same shape in which every field is
optional except `parameterSet` and `version`. It is merged onto the base document: objects merge
key by key, recursively; anything else (numbers, strings, lists, and `null`, which means
"criterion not used") replaces the base value. Then each trajectory's block is laid over
`rebound.defaults`, so a trajectory's own value wins over a default from either document. The
merged document is decoded strictly (an unknown key is an error), and its version reads
`<base set>@<base version>+<override set>@<override version>`; every alert records it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import msgspec

from backend.domain.alerts.candidate import SEVERITY_RANK, Severity
from backend.domain.safety.keywords import keyword_problems

PARAMETER_DIRECTORY = Path(__file__).parent / "parameters"
_Named = TypeVar("_Named", bound=str)


class _Parameters(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    pass


class ReboundParameters(_Parameters, frozen=True):
    """One trajectory's §2.4 parameters; None = criterion not used."""

    reference: Literal["course_baseline", "per_session"]
    baseline_within_days: float
    pre_session_within_hours: float
    nadir_min_hours: float
    min_gain_abs: int | None
    min_gain_rel: float
    min_rise_abs: int | None
    min_fraction: float
    confirm_min_gap_h: float
    confirm_max_gap_d: float
    full_return_margin: int
    response_fraction: float
    remission_at_or_below: int | None
    """The spec's "remission_below: 5" is stored as "at or below 4": one convention for all."""
    relapse_threshold: int | None
    relapse_min_gap_d: float
    relapse_max_gap_d: float
    severe_threshold: int | None
    nonresponse_check_day: float
    window_max_days: float


CssrsRiskLevel = Literal["low", "moderate", "high", "incomplete"]
"""The C-SSRS screener's risk levels that raise an alert (all but "none")."""


class SuicidalityParameters(_Parameters, frozen=True):
    reask_wait_minutes: int
    """A skipped suicide item is re-asked at once; if no re-ask arrives within this time, the
    item counts as unanswered (§5.3 rule 5)."""
    unanswered_severity: Severity
    free_text_keywords: tuple[str, ...]
    """The clinic's keyword list for patients' free text (§5.3 rule 1); empty turns it off.
    Matched case-insensitively on word boundaries (`backend.domain.safety.keywords`)."""
    free_text_severity: Severity
    """The tier of a keyword match. §5.3 grades item scores and C-SSRS answers, not free text;
    an ungraded disclosure is handled like an incomplete C-SSRS: as moderate, URGENT [P]."""
    crisis_screen_from: dict[str, int]
    """Suicide item (linkId) → the lowest value that shows the patient the crisis screen; below
    it a flagged answer is a clinician task only. §5.3 rule 1: "MADRS-S item 9 ≥4 (≥2 →
    PRIORITY task only)". Items not listed show it from their first threshold."""
    cssrs_tiers: dict[CssrsRiskLevel, Severity]
    """C-SSRS screener risk level (Columbia triage, §1.7) → alert tier (§5.3 rule 4 [P]); a
    screener with no risk raises nothing. Every level must be named (`_check`)."""


class N2ONeuroParameters(_Parameters, frozen=True):
    high_items_for_urgent: int
    rapid_progression_item: str
    risk_factor_raise: dict[Severity, Severity]
    """Tier after raising for a patient with any B12 risk factor (§5.1); tiers not listed stay."""
    hold_at_or_above: Severity
    labs_at_or_above: Severity
    mnsi_trajectory: str
    mnsi_baseline_within_days: float
    """B0 for the MNSI-Q rise: the last MNSI-Q this many days or fewer before the first session
    (§4.2 N2O baseline "before first session (≤7 d)"); the MNSI-Q has no rebound parameters."""
    mnsi_rise_from_baseline: int
    mnsi_total_at_least: int
    mnsi_severity: Severity
    exposure_rolling_days: int
    exposure_limit_hours: float
    min_interval_days: float
    monitoring_severity: Severity


class KetamineParameters(_Parameters, frozen=True):
    dissociation_item: str
    dissociation_min_value: int
    dissociation_review_after_hours: float
    dissociation_next_day_after_hours: float
    dissociation_review_severity: Severity
    dissociation_next_day_severity: Severity
    home_bp_systolic_item: str
    home_bp_diastolic_item: str
    """The patient's home reading (§5.2 "Home BP (if the patient owns a cuff)"): numbers read
    from the answers, so the thresholds are data here rather than safety items of the form."""
    home_bp_systolic_at_least: int
    home_bp_diastolic_at_least: int
    """Either number at or above its threshold raises (§5.2: ≥180 or ≥110 [P])."""
    home_bp_severity: Severity
    cognition_item: str
    """Yes to "new memory or concentration problems over weeks" raises (§5.2)."""
    cognition_severity: Severity


class MissedCheckInParameters(_Parameters, frozen=True):
    reminder_after_hours: float
    flag_after_hours: float
    flag_severity: Severity
    recent_session_hours: float
    """A check-in due within this many hours of its session's start is "recent": the post-session
    days carry the most risk (side effects, early rebound), so reminders and flags come sooner."""
    recent_reminder_after_hours: float
    recent_flag_after_hours: float
    recent_flag_severity: Severity
    withdrawal_severity: Severity
    """The tier of a patient withdrawing monitoring consent from the app [P]: check-ins stop and
    no missed check-in will ever be flagged, so the care team is told instead (`"info"`: on the
    dashboard only, nobody notified)."""


ReboundEvent = Literal[
    "REBOUND_CANDIDATE",
    "NON_RESPONSE_SESSION",
    "REBOUND_CONFIRMED",
    "LOSS_OF_RESPONSE",
    "FULL_RETURN",
    "RELAPSE_LIKE",
    "SEVERE_SCORE",
]
_CLINICIAN_TASKS: tuple[ReboundEvent, ...] = (
    "REBOUND_CONFIRMED",
    "LOSS_OF_RESPONSE",
    "FULL_RETURN",
    "RELAPSE_LIKE",
    "SEVERE_SCORE",
)
"""§2.4 events that are a clinician task; the other two are information on the dashboard."""


class AlertParameters(_Parameters, frozen=True):
    parameter_set: str
    version: str
    source: str
    sla_minutes: dict[Severity, int | None]
    rebound_severity: dict[ReboundEvent, Severity]
    """The tier of each §2.4 event (its table's "Severity" column [P]). Every event must be named
    and each clinician task is at least routine (`_check`)."""
    rebound: dict[str, ReboundParameters]
    """By trajectory key, with `rebound.defaults` already applied."""
    suicidality: SuicidalityParameters
    n2o_neuro: N2ONeuroParameters
    ketamine: KetamineParameters
    missed_check_ins: MissedCheckInParameters

    def sla_for(self, severity: Severity) -> int | None:
        return self.sla_minutes.get(severity)


class ParameterError(ValueError):
    """A parameter document that does not decode or is inconsistent."""


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Objects merge recursively; any other override value (null included) replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_document(name: str) -> dict[str, Any]:
    """A shipped parameter document by file stem, e.g. "default"."""
    path = PARAMETER_DIRECTORY / f"{name}.json"
    document = msgspec.json.decode(path.read_bytes())
    if not isinstance(document, dict):
        raise ParameterError(f"{path.name}: not a JSON object")
    return document


def build_parameters(
    base: dict[str, Any], overrides: tuple[dict[str, Any], ...] = ()
) -> AlertParameters:
    """Merge clinic overrides (in order) onto a base document and decode the result."""
    document = base
    version = f"{base.get('parameterSet')}@{base.get('version')}"
    for override in overrides:
        for required in ("parameterSet", "version"):
            if not isinstance(override.get(required), str):
                raise ParameterError(f"an override needs a string {required!r}")
        layer = {k: v for k, v in override.items() if k not in ("parameterSet", "version")}
        layer.pop("source", None)
        document = merge(document, layer)
        version += f"+{override['parameterSet']}@{override['version']}"
    rebound = document.get("rebound")
    if not isinstance(rebound, dict) or set(rebound) != {"defaults", "trajectories"}:
        raise ParameterError("rebound must hold exactly 'defaults' and 'trajectories'")
    expanded = dict(document)
    expanded["version"] = version
    expanded["rebound"] = {
        key: merge(rebound["defaults"], block) for key, block in rebound["trajectories"].items()
    }
    try:
        parameters = msgspec.convert(expanded, type=AlertParameters)
    except msgspec.ValidationError as error:
        raise ParameterError(str(error)) from error
    _check(parameters)
    return parameters


def load_parameters(*override_names: str) -> AlertParameters:
    """The shipped defaults, with shipped override documents (by file stem) applied in order."""
    return build_parameters(
        read_document("default"), tuple(read_document(name) for name in override_names)
    )


def _check(parameters: AlertParameters) -> None:
    problems = keyword_problems(parameters.suicidality.free_text_keywords)
    if problems:
        raise ParameterError("suicidality.freeTextKeywords: " + "; ".join(problems))
    if SEVERITY_RANK[parameters.suicidality.free_text_severity] < SEVERITY_RANK["priority"]:
        raise ParameterError("suicidality.freeTextSeverity must be priority or above")
    _check_cssrs_tiers(parameters.suicidality.cssrs_tiers)
    _check_ketamine(parameters.ketamine)
    _check_rebound_severity(parameters.rebound_severity)
    for key, rule in parameters.rebound.items():
        if not 0 < rule.min_fraction <= 1 or not 0 <= rule.min_gain_rel <= 1:
            raise ParameterError(f"rebound {key}: fractions must lie in (0, 1]")
        if rule.confirm_min_gap_h > rule.confirm_max_gap_d * 24:
            raise ParameterError(f"rebound {key}: confirmation gap minimum exceeds maximum")
        if rule.relapse_min_gap_d > rule.relapse_max_gap_d:
            raise ParameterError(f"rebound {key}: relapse gap minimum exceeds maximum")


def _tier_ranks(
    field: str, tiers: Mapping[_Named, Severity], names: tuple[_Named, ...]
) -> dict[_Named, int]:
    """The rank of each name's tier; every name must have one (one left out would raise
    nothing for it)."""
    missing = [name for name in names if name not in tiers]
    if missing:
        raise ParameterError(f"{field} must name " + ", ".join(missing))
    return {name: SEVERITY_RANK[tiers[name]] for name in names}


def _check_cssrs_tiers(tiers: dict[CssrsRiskLevel, Severity]) -> None:
    """Each level is at least a clinician task, and a higher risk never gets a lower tier
    (incomplete counts as moderate, §1.7)."""
    rank = _tier_ranks("suicidality.cssrsTiers", tiers, get_args(CssrsRiskLevel))
    if rank["low"] < SEVERITY_RANK["priority"]:
        raise ParameterError("suicidality.cssrsTiers: every level must be priority or above")
    if not rank["low"] <= rank["moderate"] <= rank["high"] or rank["incomplete"] < rank["moderate"]:
        raise ParameterError(
            "suicidality.cssrsTiers: a higher risk (incomplete counts as moderate) may not get"
            " a lower tier"
        )


def _check_rebound_severity(severity: dict[ReboundEvent, Severity]) -> None:
    """A clinician task below routine would reach no clinician."""
    rank = _tier_ranks("reboundSeverity", severity, get_args(ReboundEvent))
    low = [e for e in _CLINICIAN_TASKS if rank[e] < SEVERITY_RANK["routine"]]
    if low:
        raise ParameterError(
            "reboundSeverity: clinician tasks must be routine or above: " + ", ".join(low)
        )


def _check_ketamine(ketamine: KetamineParameters) -> None:
    """Each red flag reaches a clinician (a tier below routine would not), and a threshold is a
    possible reading: at or below zero every reading would raise."""
    for field, severity in (
        ("homeBpSeverity", ketamine.home_bp_severity),
        ("cognitionSeverity", ketamine.cognition_severity),
    ):
        if SEVERITY_RANK[severity] < SEVERITY_RANK["routine"]:
            raise ParameterError(f"ketamine.{field} must be routine or above")
    if ketamine.home_bp_systolic_at_least <= 0 or ketamine.home_bp_diastolic_at_least <= 0:
        raise ParameterError("ketamine: home blood pressure thresholds must be positive")
    if ketamine.home_bp_systolic_item == ketamine.home_bp_diastolic_item:
        raise ParameterError("ketamine: systolic and diastolic are two items")
