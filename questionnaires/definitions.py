"""Decoding an instrument file and checking it is clinically consistent.

msgspec checks the shape; the rules here check meaning, so that a typo in a data file (a band
that leaves a gap, a safety item that does not exist, a total range that does not match the
items) stops the service at start-up instead of mis-scoring a patient.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec

from questionnaires.errors import InstrumentDefinitionError
from questionnaires.model import (
    DomainMaximaScoring,
    Instrument,
    Item,
    NoTotal,
    SumScoring,
    scored_range,
)

_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")  # also a valid FHIR id (R4 §2.24.0.1)
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_LINK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LOINC = re.compile(r"^\d{1,7}-\d$")
_LOINC_ANSWER = re.compile(r"^LA\d{1,7}-\d$")


def stem_link_id(instrument: Instrument) -> str:
    """linkId of the display item that carries the stem in the FHIR rendering."""
    return f"{instrument.id}-stem"


def decode_instrument(data: bytes, source: str) -> Instrument:
    """Decode and check one definition; `source` (a file name) prefixes every error message."""
    try:
        instrument = msgspec.json.decode(data, type=Instrument)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise InstrumentDefinitionError(f"{source}: {exc}") from exc
    problems = list(consistency_problems(instrument))
    if problems:
        raise InstrumentDefinitionError(f"{source}: " + "; ".join(problems))
    return instrument


def consistency_problems(instrument: Instrument) -> Iterator[str]:
    """Every rule the definition breaks, in plain words."""
    if not _ID.fullmatch(instrument.id) or len(instrument.id) > 64:
        yield f"id {instrument.id!r} must be lower-case letters, digits and single hyphens"
    if not _VERSION.fullmatch(instrument.version):
        yield f"version {instrument.version!r} must be MAJOR.MINOR.PATCH"
    if not instrument.trajectory_key:
        yield "trajectory key is empty"
    for code in (instrument.loinc_panel, instrument.loinc_total):
        if code is not None and not _LOINC.fullmatch(code):
            yield f"LOINC code {code!r} is malformed"
    item_problems = list(_item_problems(instrument))
    yield from item_problems
    if item_problems:
        return  # the rules below assume well-formed items
    yield from _wording_problems(instrument)
    yield from _scoring_problems(instrument)
    yield from _band_problems(instrument)
    yield from _safety_problems(instrument)


def _item_problems(instrument: Instrument) -> Iterator[str]:
    seen: set[str] = set()
    for item in instrument.items:
        link_id = item.link_id
        if not _LINK_ID.fullmatch(link_id) or link_id == stem_link_id(instrument):
            yield f"linkId {link_id!r} is not a valid or free linkId"
        if link_id in seen:
            yield f"linkId {link_id!r} is used twice"
        if item.loinc is not None and not _LOINC.fullmatch(item.loinc):
            yield f"{link_id}: LOINC code {item.loinc!r} is malformed"
        yield from _type_problems(item)
        yield from _enable_when_problems(instrument, item, seen)
        seen.add(link_id)
    if not instrument.items:
        yield "instrument has no items"
    numeric = {item.link_id for item in instrument.items if item.type in ("integer", "decimal")}
    for order in instrument.value_orders:
        if not {order.above, order.below} <= numeric or order.above == order.below:
            yield f"value order {order.above} > {order.below} must name two numeric items"


def _type_problems(item: Item) -> Iterator[str]:
    link_id = item.link_id
    numeric = item.type in ("integer", "decimal")
    if item.type == "choice":
        values = [option.value for option in item.options]
        if len(values) < 2:
            yield f"{link_id}: a choice item needs at least two options"
        if len(set(values)) != len(values):
            yield f"{link_id}: option values are not unique"
        for option in item.options:
            if option.loinc is not None and not _LOINC_ANSWER.fullmatch(option.loinc):
                yield f"{link_id}: LOINC answer code {option.loinc!r} is malformed"
    elif item.options:
        yield f"{link_id}: only choice items have options"
    if numeric:
        if item.min_value is None or item.max_value is None:
            yield f"{link_id}: numeric items need minValue and maxValue"
        elif item.min_value > item.max_value:
            yield f"{link_id}: minValue is above maxValue"
        elif item.type == "integer" and not (
            isinstance(item.min_value, int) and isinstance(item.max_value, int)
        ):
            yield f"{link_id}: integer bounds must be integers"
    elif item.min_value is not None or item.max_value is not None or item.unit is not None:
        yield f"{link_id}: only numeric items have bounds and units"
    if item.max_length is not None and item.type != "text":
        yield f"{link_id}: only text items have maxLength"


def _enable_when_problems(instrument: Instrument, item: Item, earlier: set[str]) -> Iterator[str]:
    for condition in item.enable_when:
        trigger = instrument.item(condition.link_id)
        if trigger is None or condition.link_id not in earlier:
            yield f"{item.link_id}: enableWhen must refer to an earlier item"
        elif trigger.type == "boolean":
            if not isinstance(condition.answer, bool):
                yield f"{item.link_id}: enableWhen on a yes/no item needs true or false"
        elif trigger.type == "choice":
            values = {option.value for option in trigger.options}
            if isinstance(condition.answer, bool) or condition.answer not in values:
                yield f"{item.link_id}: enableWhen answer is not an option of {trigger.link_id}"
        else:
            yield f"{item.link_id}: enableWhen may only depend on choice or yes/no items"


def _wording_problems(instrument: Instrument) -> Iterator[str]:
    texts = [item.text for item in instrument.items]
    texts += [option.text for item in instrument.items for option in item.options]
    if instrument.requires_licensed_text:
        if any(text is not None for text in texts):
            yield "requiresLicensedText is set, so items and options must carry no wording"
    elif instrument.respondent == "patient" and any(text is None for text in texts):
        yield "a patient-facing form needs wording for every item and option"


def _scored_items(instrument: Instrument) -> list[str]:
    scoring = instrument.scoring
    if isinstance(scoring, SumScoring):
        return list(scoring.items)
    assert isinstance(scoring, DomainMaximaScoring)  # only called for rules with a total
    return [link_id for domain in scoring.domains for link_id in domain.items]


def total_range(instrument: Instrument) -> tuple[int, int] | None:
    """The range of the total implied by the items and the rule (None when there is no total)."""
    scoring = instrument.scoring
    if isinstance(scoring, NoTotal):
        return None
    items = {item.link_id: item for item in instrument.items}
    if isinstance(scoring, SumScoring):
        ranges = [scored_range(items[link_id]) for link_id in scoring.items]
    else:
        ranges = [
            (
                max(scored_range(items[link_id])[0] for link_id in domain.items),
                max(scored_range(items[link_id])[1] for link_id in domain.items),
            )
            for domain in scoring.domains
        ]
    return sum(low for low, _ in ranges), sum(high for _, high in ranges)


def _scoring_problems(instrument: Instrument) -> Iterator[str]:
    scoring = instrument.scoring
    if isinstance(scoring, NoTotal):
        if instrument.total_min is not None or instrument.total_max is not None:
            yield "an instrument without a total has no total range"
        return
    scored = _scored_items(instrument)
    well_formed = bool(scored)
    if not scored:
        yield "the scoring rule names no items"
    if len(set(scored)) != len(scored):
        yield "an item is scored twice"
    for link_id in scored:
        item = instrument.item(link_id)
        if item is None or item.type not in ("choice", "boolean"):
            yield f"scored item {link_id!r} must be an existing choice or yes/no item"
            well_formed = False
    if isinstance(scoring, DomainMaximaScoring) and any(not d.items for d in scoring.domains):
        yield "every domain needs at least one item"
        well_formed = False
    if isinstance(scoring, SumScoring):
        if not set(scoring.reversed_items) <= set(scoring.items):
            yield "reversed items must be scored items"
        if not set(scoring.proration.never_prorate) <= set(scoring.items):
            yield "never-prorated items must be scored items"
        if not 0 <= scoring.proration.max_missing < len(scoring.items):
            yield "maxMissing must leave at least one answered item"
    if not well_formed:
        return
    declared = (instrument.total_min, instrument.total_max)
    implied = total_range(instrument)
    if declared != implied:
        yield f"declared total range {declared} differs from the range {implied} the items imply"


def _band_problems(instrument: Instrument) -> Iterator[str]:
    bands = instrument.bands
    if not bands:
        return
    if instrument.total_min is None or instrument.total_max is None:
        yield "severity bands need a total range"
        return
    codes = [band.code for band in bands]
    if len(set(codes)) != len(codes):
        yield "band codes are not unique"
    expected_min = instrument.total_min
    for band in bands:
        if band.min != expected_min or band.max < band.min:
            yield f"band {band.code!r} must start at {expected_min} and not end before it starts"
            return
        expected_min = band.max + 1
    if bands[-1].max != instrument.total_max:
        yield f"bands must end at the maximum total {instrument.total_max}"


def _safety_problems(instrument: Instrument) -> Iterator[str]:
    seen: set[str] = set()
    for safety in instrument.safety_items:
        item = instrument.item(safety.link_id)
        if safety.link_id in seen:
            yield f"safety item {safety.link_id!r} is listed twice"
        seen.add(safety.link_id)
        if item is None:
            yield f"safety item {safety.link_id!r} does not exist"
            continue
        if item.type in ("choice", "boolean"):
            low, high = scored_range(item)
        elif item.type == "integer":
            assert item.min_value is not None  # checked by _type_problems
            assert item.max_value is not None
            low, high = int(item.min_value), int(item.max_value)
        else:
            yield f"safety item {safety.link_id!r} must be a choice, yes/no or integer item"
            continue
        minima = [threshold.min_value for threshold in safety.thresholds]
        if not minima or minima != sorted(set(minima)):
            yield f"safety item {safety.link_id!r} needs strictly ascending thresholds"
        elif minima[0] <= low or minima[-1] > high:
            yield f"safety item {safety.link_id!r} thresholds must lie above its lowest answer"
