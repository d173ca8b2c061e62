"""A small, valid definition exercising every item type, for tests that bend the format."""

import copy
from typing import Any

import msgspec

from questionnaires.definitions import decode_instrument
from questionnaires.model import Instrument

BASE: dict[str, Any] = {
    "id": "demo",
    "version": "1.0.0",
    "title": "Demo",
    "respondent": "patient",
    "validated": False,
    "requiresLicensedText": False,
    "recall": {"text": "today", "hours": 24},
    "trajectoryKey": "demo",
    "licence": {"status": "free", "notice": "Test only."},
    "source": "tests",
    "stem": "Stem",
    "loincPanel": "12345-6",
    "items": [
        {
            "linkId": "mood",
            "type": "choice",
            "topic": "Mood",
            "text": "Mood?",
            "options": [
                {"value": 0, "text": "Fine"},
                {"value": 1, "text": "Low"},
                {"value": 2, "text": "Very low", "loinc": "LA1234-5"},
            ],
            "loinc": "11111-1",
        },
        {"linkId": "slept", "type": "boolean", "topic": "Slept", "text": "Slept?"},
        {
            "linkId": "why",
            "type": "text",
            "topic": "Why",
            "text": "Why low?",
            "maxLength": 5,
            "enableWhen": [{"linkId": "mood", "answer": 2}],
        },
        {
            "linkId": "hours",
            "type": "decimal",
            "topic": "Hours",
            "text": "Hours slept?",
            "minValue": 0,
            "maxValue": 24,
            "unit": "h",
            "required": True,
        },
        {
            "linkId": "naps",
            "type": "integer",
            "topic": "Naps",
            "text": "Naps?",
            "minValue": 0,
            "maxValue": 5,
        },
    ],
    "scoring": {
        "rule": "sum",
        "items": ["mood", "slept"],
        "reversedItems": ["slept"],
        "proration": {"maxMissing": 1},
    },
    "totalMin": 0,
    "totalMax": 3,
    "bands": [
        {"code": "low", "label": "Low", "min": 0, "max": 1},
        {"code": "high", "label": "High", "min": 2, "max": 3},
    ],
    "safetyItems": [
        {
            "linkId": "naps",
            "concern": "sedation",
            "thresholds": [{"minValue": 3, "tier": "routine"}],
        }
    ],
}


def definition(**changes: Any) -> dict[str, Any]:
    """A deep copy of BASE with top-level keys replaced."""
    return copy.deepcopy(BASE) | changes


def demo(data: dict[str, Any] | None = None) -> Instrument:
    return decode_instrument(msgspec.json.encode(data or BASE), "demo.json")
