"""FHIR R4 interchange: instruments as `Questionnaire`, submissions from `QuestionnaireResponse`.

Plain dicts in and out (no FHIR library at run time); tests validate the output with
`fhir.resources`. Choice answers carry the LOINC answer code where the spec gives one, otherwise
the option value as a code, and always the value as an `ordinalValue` extension, so a FHIR client
can score without our definitions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from questionnaires.answers import Answer, AnswerValue, Submission
from questionnaires.definitions import stem_link_id
from questionnaires.errors import AnswerProblem, AnswerValidationError
from questionnaires.model import AnswerOption, EnableWhen, Instrument, Item, ValueOrder

DEFAULT_CANONICAL_BASE = "urn:interlude:fhir:Questionnaire"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ANSWER_VALUE_SYSTEM = "urn:interlude:fhir:CodeSystem:answer-value"
"""Code system for options without a LOINC answer code: the code is the option's value."""
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
TARGET_CONSTRAINT = "http://hl7.org/fhir/StructureDefinition/targetConstraint"
"""SDC's rule a form filler checks before it submits: here each of the instrument's value orders,
as a FHIRPath on the response (the server checks them anyway, `answers.validate_answers`)."""

_FHIR_TYPE = {
    "choice": "choice",
    "boolean": "boolean",
    "integer": "integer",
    "decimal": "decimal",
    "text": "text",
}


def canonical_url(instrument_id: str, base: str = DEFAULT_CANONICAL_BASE) -> str:
    return f"{base}/{instrument_id}"


def render_questionnaire(
    instrument: Instrument, canonical_base: str = DEFAULT_CANONICAL_BASE
) -> dict[str, Any]:
    """The instrument as a FHIR R4 `Questionnaire` resource (a JSON-ready dict)."""
    items: list[dict[str, Any]] = []
    if instrument.stem is not None:
        items.append(
            {"linkId": stem_link_id(instrument), "type": "display", "text": instrument.stem}
        )
    items += [_render_item(instrument, item) for item in instrument.items]
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": instrument.id,
        "url": canonical_url(instrument.id, canonical_base),
        "version": instrument.version,
        "name": "".join(part.capitalize() for part in instrument.id.split("-")),
        "title": instrument.title,
        "status": "active",
        "subjectType": ["Patient"],
        "copyright": instrument.licence.notice,
        "item": items,
    }
    if instrument.loinc_panel is not None:
        resource["code"] = [
            {"system": LOINC, "code": instrument.loinc_panel, "display": instrument.title}
        ]
    if instrument.value_orders:
        resource["extension"] = [
            _value_order(instrument, order, number)
            for number, order in enumerate(instrument.value_orders, 1)
        ]
    return resource


def _value_order(instrument: Instrument, order: ValueOrder, number: int) -> dict[str, Any]:
    def answer(link_id: str) -> str:
        return f"%resource.repeat(item).where(linkId='{link_id}').answer.value"

    above, below = answer(order.above), answer(order.below)
    above_item, below_item = instrument.item(order.above), instrument.item(order.below)
    assert above_item is not None  # definitions rule: a value order names two numeric items
    assert below_item is not None
    return {
        "url": TARGET_CONSTRAINT,
        "extension": [
            {"url": "key", "valueId": f"value-order-{number}"},
            {"url": "severity", "valueCode": "error"},
            {
                "url": "expression",
                "valueExpression": {
                    "language": "text/fhirpath",
                    "expression": f"{above}.empty() or {below}.empty() or {above} > {below}",
                },
            },
            {
                "url": "human",
                "valueString": f"{above_item.topic} must be above {below_item.topic.lower()}.",
            },
            {"url": "location", "valueString": f"item.where(linkId='{order.above}')"},
        ],
    }


def _coding(option: AnswerOption) -> dict[str, Any]:
    coding: dict[str, Any] = {
        "extension": [{"url": ORDINAL_VALUE, "valueDecimal": option.value}],
        "system": LOINC if option.loinc is not None else ANSWER_VALUE_SYSTEM,
        "code": option.loinc if option.loinc is not None else str(option.value),
    }
    if option.text is not None:
        coding["display"] = option.text
    return coding


def _render_item(instrument: Instrument, item: Item) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "linkId": item.link_id,
        "text": item.text if item.text is not None else item.topic,
        "type": _FHIR_TYPE[item.type],
        "required": item.required,
    }
    if item.loinc is not None:
        rendered["code"] = [{"system": LOINC, "code": item.loinc}]
    if item.options:
        rendered["answerOption"] = [{"valueCoding": _coding(option)} for option in item.options]
    extensions: list[dict[str, Any]] = []
    value_key = "valueInteger" if item.type == "integer" else "valueDecimal"
    if item.min_value is not None:
        extensions.append({"url": MIN_VALUE, value_key: item.min_value})
    if item.max_value is not None:
        extensions.append({"url": MAX_VALUE, value_key: item.max_value})
    if item.unit is not None:
        extensions.append({"url": UNIT, "valueCoding": {"system": UCUM, "code": item.unit}})
    if extensions:
        rendered["extension"] = extensions
    if item.max_length is not None:
        rendered["maxLength"] = item.max_length
    if item.enable_when:
        rendered["enableWhen"] = [_enable_when(instrument, c) for c in item.enable_when]
        if len(item.enable_when) > 1:
            rendered["enableBehavior"] = "any"
    return rendered


def _enable_when(instrument: Instrument, condition: EnableWhen) -> dict[str, Any]:
    rendered: dict[str, Any] = {"question": condition.link_id, "operator": "="}
    if isinstance(condition.answer, bool):
        rendered["answerBoolean"] = condition.answer
    else:
        trigger = instrument.item(condition.link_id)
        assert trigger is not None  # definitions rule: enableWhen refers to an earlier item
        option = next(o for o in trigger.options if o.value == condition.answer)
        rendered["answerCoding"] = _coding(option)
    return rendered


def questionnaire_reference(resource: Mapping[str, Any]) -> tuple[str, str | None]:
    """(instrument id, version or None) named by a `QuestionnaireResponse.questionnaire`."""
    reference = resource.get("questionnaire")
    if resource.get("resourceType") != "QuestionnaireResponse" or not isinstance(reference, str):
        raise AnswerValidationError([AnswerProblem(code="malformed")])
    url, _, version = reference.partition("|")
    return url.rstrip("/").rsplit("/", 1)[-1], version or None


def parse_questionnaire_response(resource: Mapping[str, Any], instrument: Instrument) -> Submission:
    """Our answer form from a `QuestionnaireResponse` dict; the version defaults to the
    instrument's when the canonical reference carries none.

    Raises `AnswerValidationError`; `score()` then applies the full answer validation.
    """
    instrument_id, version = questionnaire_reference(resource)
    if instrument_id != instrument.id:
        raise AnswerValidationError([AnswerProblem(code="wrong_instrument")])
    problems: list[AnswerProblem] = []
    answers: list[Answer] = []
    for link_id, given in _answered_items(resource.get("item", []), problems):
        if link_id == stem_link_id(instrument):
            continue
        if len(given) != 1:
            problems.append(AnswerProblem(code="multiple_answers", link_id=link_id))
            continue
        value = _answer_value(instrument, link_id, given[0], problems)
        if value is not None:
            answers.append(Answer(link_id=link_id, value=value))
    if problems:
        raise AnswerValidationError(problems)
    return Submission(
        instrument_id=instrument.id,
        instrument_version=version or instrument.version,
        answers=tuple(answers),
    )


def _answered_items(
    items: object, problems: list[AnswerProblem]
) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
    """Every (linkId, answers) pair with at least one answer, flattening nested groups."""
    if not isinstance(items, list):
        problems.append(AnswerProblem(code="malformed"))
        return
    for item in items:
        link_id = item.get("linkId") if isinstance(item, Mapping) else None
        given = item.get("answer", []) if isinstance(item, Mapping) else None
        if not isinstance(link_id, str) or not isinstance(given, list):
            problems.append(AnswerProblem(code="malformed"))
            continue
        if not all(isinstance(answer, Mapping) for answer in given):
            problems.append(AnswerProblem(code="malformed", link_id=link_id))
            continue
        if given:
            yield link_id, given
        yield from _answered_items(item.get("item", []), problems)
        for answer in given:
            yield from _answered_items(answer.get("item", []), problems)


def _answer_value(
    instrument: Instrument,
    link_id: str,
    answer: Mapping[str, Any],
    problems: list[AnswerProblem],
) -> AnswerValue | None:
    item = instrument.item(link_id)
    if item is None:
        problems.append(AnswerProblem(code="unknown_item", link_id=link_id))
        return None
    if "valueCoding" in answer:
        coding = answer["valueCoding"]
        if item.type != "choice" or not isinstance(coding, Mapping):
            problems.append(AnswerProblem(code="wrong_type", link_id=link_id))
            return None
        option = next((o for o in item.options if _matches(o, coding)), None)
        if option is None:
            problems.append(AnswerProblem(code="not_an_option", link_id=link_id))
            return None
        return option.value
    for key, kind in (
        ("valueBoolean", bool),
        ("valueInteger", int),
        ("valueDecimal", float),
        ("valueString", str),
    ):
        value = answer.get(key)
        # bool is an int in Python; only the FHIR key decides which type was sent.
        if key in answer and (
            isinstance(value, kind) or (kind is float and isinstance(value, int))
        ):
            return float(value) if kind is float else value
    problems.append(AnswerProblem(code="wrong_type", link_id=link_id))
    return None


def _matches(option: AnswerOption, coding: Mapping[str, Any]) -> bool:
    system = LOINC if option.loinc is not None else ANSWER_VALUE_SYSTEM
    code = option.loinc if option.loinc is not None else str(option.value)
    return coding.get("code") == code and coding.get("system", system) == system
