"""A bad instrument file stops loading with a message naming the file and the broken rule."""

import copy
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from questionnaires.definitions import consistency_problems, decode_instrument, total_range
from questionnaires.errors import InstrumentDefinitionError
from questionnaires.registry import get_instrument
from tests.questionnaires.synthetic import BASE, definition, demo


def items(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """Mutate the item whose linkId is given in `at`."""

    def mutate(data: dict[str, Any]) -> None:
        target = next(i for i in data["items"] if i["linkId"] == changes["at"])
        for key, value in changes.items():
            if key != "at":
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = value

    return mutate


def top(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value

    return mutate


def scoring(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        data["scoring"].update(changes)

    return mutate


SAFE = BASE["safetyItems"][0]

CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("bad id", top(id="Demo_1"), "must be lower-case"),
    ("bad version", top(version="1.0"), "MAJOR.MINOR.PATCH"),
    ("empty trajectory", top(trajectoryKey=""), "trajectory key is empty"),
    ("bad panel LOINC", top(loincPanel="x"), "LOINC code 'x' is malformed"),
    (
        "no items",
        top(
            items=[],
            scoring={"rule": "none"},
            bands=[],
            safetyItems=[],
            totalMin=None,
            totalMax=None,
        ),
        "no items",
    ),
    ("bad linkId", items(at="naps", linkId="has space"), "not a valid or free linkId"),
    ("stem linkId", items(at="naps", linkId="demo-stem"), "not a valid or free linkId"),
    ("duplicate linkId", items(at="naps", linkId="hours"), "used twice"),
    ("bad item LOINC", items(at="mood", loinc="1"), "mood: LOINC code"),
    ("one option", items(at="mood", options=[{"value": 0, "text": "x"}]), "at least two options"),
    (
        "duplicate option",
        items(at="mood", options=[{"value": 0, "text": "a"}, {"value": 0, "text": "b"}]),
        "not unique",
    ),
    (
        "bad answer LOINC",
        items(
            at="mood",
            options=[{"value": 0, "text": "a", "loinc": "LA1"}, {"value": 1, "text": "b"}],
        ),
        "LOINC answer code",
    ),
    (
        "options on boolean",
        items(at="slept", options=[{"value": 0}, {"value": 1}]),
        "only choice items",
    ),
    ("numeric without bounds", items(at="naps", maxValue=None), "need minValue and maxValue"),
    ("inverted bounds", items(at="naps", minValue=9), "minValue is above maxValue"),
    ("fractional integer bound", items(at="naps", maxValue=5.5), "integer bounds"),
    ("bounds on text", items(at="why", unit="h"), "only numeric items have bounds"),
    ("maxLength on choice", items(at="mood", maxLength=3), "only text items have maxLength"),
    (
        "enableWhen forward",
        items(at="mood", enableWhen=[{"linkId": "slept", "answer": True}]),
        "earlier item",
    ),
    (
        "enableWhen yes/no",
        items(at="why", enableWhen=[{"linkId": "slept", "answer": 1}]),
        "needs true or false",
    ),
    (
        "enableWhen option",
        items(at="why", enableWhen=[{"linkId": "mood", "answer": 7}]),
        "not an option",
    ),
    (
        "enableWhen numeric",
        items(at="naps", enableWhen=[{"linkId": "hours", "answer": 1}]),
        "only depend on choice",
    ),
    ("licensed text with wording", top(requiresLicensedText=True), "must carry no wording"),
    ("patient form without wording", items(at="naps", text=None), "needs wording"),
    ("no-total with range", top(scoring={"rule": "none"}, bands=[]), "has no total range"),
    ("sum of nothing", scoring(items=[], reversedItems=[], proration={}), "names no items"),
    ("scored twice", scoring(items=["mood", "mood"], reversedItems=[]), "scored twice"),
    ("scored text", scoring(items=["mood", "why"], reversedItems=[]), "'why' must be an existing"),
    (
        "empty domain",
        top(scoring={"rule": "sum_of_domain_maxima", "domains": [{"name": "a", "items": []}]}),
        "at least one item",
    ),
    ("reversed unscored", scoring(reversedItems=["naps"]), "reversed items"),
    ("never-prorate unscored", scoring(proration={"neverProrate": ["naps"]}), "never-prorated"),
    ("prorate everything", scoring(proration={"maxMissing": 2}), "maxMissing"),
    ("wrong total range", top(totalMax=4), "differs from the range (0, 3)"),
    (
        "bands without range",
        top(scoring={"rule": "none"}, totalMin=None, totalMax=None),
        "need a total range",
    ),
    (
        "duplicate band code",
        top(
            bands=[
                {"code": "a", "label": "A", "min": 0, "max": 1},
                {"code": "a", "label": "B", "min": 2, "max": 3},
            ]
        ),
        "not unique",
    ),
    (
        "band gap",
        top(
            bands=[
                {"code": "a", "label": "A", "min": 0, "max": 1},
                {"code": "b", "label": "B", "min": 3, "max": 3},
            ]
        ),
        "must start at 2",
    ),
    (
        "band short",
        top(bands=[{"code": "a", "label": "A", "min": 0, "max": 2}]),
        "must end at the maximum",
    ),
    ("safety twice", top(safetyItems=[SAFE, SAFE]), "listed twice"),
    ("safety missing", top(safetyItems=[{**SAFE, "linkId": "nope"}]), "does not exist"),
    (
        "safety on text",
        top(safetyItems=[{**SAFE, "linkId": "why"}]),
        "must be a choice, yes/no or integer",
    ),
    (
        "safety unordered",
        top(
            safetyItems=[
                {
                    **SAFE,
                    "thresholds": [
                        {"minValue": 3, "tier": "high"},
                        {"minValue": 2, "tier": "routine"},
                    ],
                }
            ]
        ),
        "strictly ascending",
    ),
    (
        "safety at lowest answer",
        top(safetyItems=[{**SAFE, "thresholds": [{"minValue": 0, "tier": "high"}]}]),
        "above its lowest answer",
    ),
    (
        "safety on choice beyond range",
        top(
            safetyItems=[
                {
                    "linkId": "mood",
                    "concern": "suicidality",
                    "thresholds": [{"minValue": 3, "tier": "high"}],
                }
            ]
        ),
        "above its lowest answer",
    ),
    (
        "value order on a choice",
        top(valueOrders=[{"above": "hours", "below": "mood"}]),
        "must name two numeric items",
    ),
    (
        "value order on a missing item",
        top(valueOrders=[{"above": "hours", "below": "nope"}]),
        "must name two numeric items",
    ),
    (
        "value order on itself",
        top(valueOrders=[{"above": "hours", "below": "hours"}]),
        "must name two numeric items",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_definition_is_refused_with_a_clear_message(
    mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(InstrumentDefinitionError, match=r"^demo\.json: ") as caught:
        decode_instrument(msgspec.json.encode(data), "demo.json")
    assert message in str(caught.value)


def test_shape_errors_name_the_file_and_the_field() -> None:
    with pytest.raises(InstrumentDefinitionError, match=r"demo.json: .*\$\.items\[0\]\.type"):
        decode_instrument(
            msgspec.json.encode(
                definition(items=[{"linkId": "a", "type": "slider", "topic": "A"}])
            ),
            "demo.json",
        )
    with pytest.raises(
        InstrumentDefinitionError, match=r"demo.json: Object contains unknown field"
    ):
        decode_instrument(msgspec.json.encode(definition(colour="red")), "demo.json")
    with pytest.raises(InstrumentDefinitionError, match=r"demo.json: "):
        decode_instrument(b"{", "demo.json")


def test_the_synthetic_definition_is_consistent() -> None:
    instrument = demo()
    assert list(consistency_problems(instrument)) == []
    assert total_range(instrument) == (0, 3)


def test_checklists_imply_no_total_range() -> None:
    assert total_range(get_instrument("n2o-neuro")) is None
