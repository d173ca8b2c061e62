"""The instrument definition format: msgspec Structs that `instruments/*.json` files decode into.

A definition carries everything the server needs to serve, validate and score one version of one
instrument, so no rule is keyed on question text (the counter-example in STYLE.md). Field names
are camelCase in JSON (`linkId`, as in FHIR) and snake_case in Python.

Structural typing is enforced by msgspec at decode time; the clinical consistency rules (bands
partition the score range, safety items exist, ...) live in `questionnaires.definitions`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

ItemType = Literal["choice", "boolean", "integer", "decimal", "text"]
"""choice: one of the listed integer-valued options; boolean: yes/no; integer/decimal: a number
within bounds (blood pressure); text: free text (PHI, never scored)."""

Respondent = Literal["patient", "clinician"]

Tier = Literal["routine", "priority", "high", "urgent", "emergency"]
"""Alert tiers named as in clinical-spec §5 (ROUTINE < PRIORITY < HIGH < URGENT < EMERGENCY)."""

Concern = Literal[
    "suicidality",
    "n2o_neurology",
    "ketamine_bladder",
    "ketamine_misuse",
    "psychotic_symptoms",
    "blood_pressure",
    "sedation",
]
"""Which safety rule family (clinical-spec §5.1-§5.3) a positive safety item feeds."""

LicenceStatus = Literal["free", "confirm_before_release", "licence_required"]


class _Definition(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    """Immutable, and strict about unknown keys: a typo in a data file must not pass silently.

    Subclasses repeat `frozen=True` so that type checkers see it too."""


class AnswerOption(_Definition, frozen=True):
    value: int
    text: str | None = None
    """Exact published wording; None when the clinic must supply licensed anchor text."""
    loinc: str | None = None
    """LOINC answer code (LA…), where the spec gives one."""


class EnableWhen(_Definition, frozen=True):
    """Show the item when earlier item `link_id` has this answer; any one condition suffices."""

    link_id: str
    answer: bool | int


class Item(_Definition, frozen=True):
    link_id: str
    """Stable identifier; answers, scores and alerts refer to items only by linkId."""
    type: ItemType
    topic: str
    """Short label for dashboards, and the only label when licensed wording must be supplied."""
    text: str | None = None
    options: tuple[AnswerOption, ...] = ()
    min_value: int | float | None = None
    max_value: int | float | None = None
    max_length: int | None = None
    unit: str | None = None
    """UCUM unit code for numeric items (e.g. "mm[Hg]")."""
    loinc: str | None = None
    required: bool = False
    """Required items must be answered when enabled. Scored items stay optional: the missing-item
    policy of the scoring rule decides what a gap means (clinical-spec §1.1)."""
    enable_when: tuple[EnableWhen, ...] = ()


class ValueOrder(_Definition, frozen=True):
    """Two numeric items whose values must be in this order when both are answered: a blood
    pressure's top number above its bottom one. Values the other way round are a slip of the
    finger (or a swapped entry), not a reading, and a swapped one would raise the wrong alert."""

    above: str
    """linkId of the item whose value must be strictly greater."""
    below: str


class RecallWindow(_Definition, frozen=True):
    text: str
    """As worded on the form, e.g. "last 2 weeks"."""
    hours: int | None = None
    """Length of a fixed recall period; None when the window is relative (since last check-in,
    present state, usual state)."""


class Licence(_Definition, frozen=True):
    status: LicenceStatus
    notice: str
    """Copyright/licence notice to display with the form."""


class Proration(_Definition, frozen=True):
    """Missing-item policy for a sum score: up to `max_missing` unanswered items are replaced by
    the mean of the answered ones (Arrieta 2017 convention, clinical-spec §1.1); an unanswered item
    in `never_prorate` (suicide items, §5.3 rule 5) leaves the total null."""

    max_missing: int = 0
    never_prorate: tuple[str, ...] = ()


class SumScoring(_Definition, frozen=True, tag="sum", tag_field="rule"):
    """Total = sum of item values; boolean items count yes=1, and `reversed_items` count the
    opposite end of their range (MNSI items 7 and 13 score 1 for "no")."""

    items: tuple[str, ...]
    reversed_items: tuple[str, ...] = ()
    proration: Proration = Proration()


class Domain(_Definition, frozen=True):
    name: str
    items: tuple[str, ...]


class DomainMaximaScoring(_Definition, frozen=True, tag="sum_of_domain_maxima", tag_field="rule"):
    """Total = sum over domains of the highest item in each (QIDS-SR16, Rush 2003). A multi-item
    domain is scored from its answered items; a domain with none answered leaves the total null
    (clinical-spec §1.4)."""

    domains: tuple[Domain, ...]


class NoTotal(_Definition, frozen=True, tag="none", tag_field="rule"):
    """Checklists and clinical readings: no total score, only safety flags."""


Scoring = SumScoring | DomainMaximaScoring | NoTotal


class SeverityBand(_Definition, frozen=True):
    code: str
    label: str
    min: int
    max: int


class SafetyThreshold(_Definition, frozen=True):
    min_value: int
    """Positive when the answer is at least this; yes counts as 1."""
    tier: Tier


class SafetyItem(_Definition, frozen=True):
    link_id: str
    concern: Concern
    thresholds: tuple[SafetyThreshold, ...]
    """Ascending; a positive answer is flagged with the tier of the highest threshold it reaches."""


class Instrument(_Definition, frozen=True):
    """One version of one instrument."""

    id: str
    version: str
    """MAJOR.MINOR.PATCH; any change to items, options or scoring is a new version."""
    title: str
    respondent: Respondent
    validated: bool
    """False for the spec's proposed (non-validated) checklists and variants."""
    requires_licensed_text: bool
    """True when the licence is unclear: items carry only a topic and the clinic must supply the
    licensed wording before patients see the form (clinical-spec §6)."""
    recall: RecallWindow
    trajectory_key: str
    """Scores are comparable over time only within one trajectory key. Instruments with a
    different recall window get a different id and key (clinical-spec §1.0 caveat)."""
    licence: Licence
    source: str
    """Citation for the wording and scoring rule."""
    items: tuple[Item, ...]
    scoring: Scoring
    stem: str | None = None
    loinc_panel: str | None = None
    loinc_total: str | None = None
    total_min: int | None = None
    total_max: int | None = None
    bands: tuple[SeverityBand, ...] = ()
    safety_items: tuple[SafetyItem, ...] = ()
    notes: tuple[str, ...] = ()
    value_orders: tuple[ValueOrder, ...] = ()

    def item(self, link_id: str) -> Item | None:
        return next((item for item in self.items if item.link_id == link_id), None)


def scored_range(item: Item) -> tuple[int, int]:
    """The lowest and highest value an item can add to a score (choice and yes/no items only)."""
    if item.type == "boolean":
        return 0, 1
    values = [option.value for option in item.options]
    return min(values), max(values)
