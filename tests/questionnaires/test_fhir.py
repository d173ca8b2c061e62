"""FHIR R4 rendering validated with fhir.resources (R4B models), and QuestionnaireResponse
round trips that must score exactly like our own answer form."""

from collections.abc import Mapping
from typing import Any

import pytest
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import (
    QuestionnaireResponse,
    QuestionnaireResponseItem,
    QuestionnaireResponseItemAnswer,
)

from questionnaires.answers import AnswerValue
from questionnaires.errors import AnswerProblem, AnswerValidationError
from questionnaires.fhir import (
    ANSWER_VALUE_SYSTEM,
    LOINC,
    canonical_url,
    parse_questionnaire_response,
    questionnaire_reference,
    render_questionnaire,
)
from questionnaires.model import Instrument
from questionnaires.registry import get_instrument, list_instruments, score_submission
from tests.questionnaires.builders import numbered, submission
from tests.questionnaires.synthetic import demo

ALL = list_instruments()


@pytest.mark.parametrize("instrument", ALL, ids=[i.id for i in ALL])
def test_every_rendered_questionnaire_validates_with_fhir_resources(instrument: Instrument) -> None:
    rendered = render_questionnaire(instrument)
    model = Questionnaire.model_validate(rendered)
    assert model.id == instrument.id
    assert model.version == instrument.version
    assert model.copyright == instrument.licence.notice
    assert model.item is not None
    link_ids = [str(item.linkId) for item in model.item]
    assert [i.link_id for i in instrument.items] == [x for x in link_ids if not x.endswith("-stem")]


def test_phq9_questionnaire_carries_loinc_panel_items_and_answers() -> None:
    rendered = render_questionnaire(get_instrument("phq9"))
    assert rendered["code"] == [{"system": LOINC, "code": "44249-1", "display": rendered["title"]}]
    stem, first = rendered["item"][0], rendered["item"][1]
    assert stem["type"] == "display"
    assert first["code"] == [{"system": LOINC, "code": "44250-9"}]
    assert first["answerOption"][3]["valueCoding"]["code"] == "LA6571-9"
    assert first["answerOption"][3]["valueCoding"]["extension"][0]["valueDecimal"] == 3


def test_licensed_text_instruments_render_topics_and_value_codes() -> None:
    rendered = render_questionnaire(get_instrument("qids-sr16"))
    assert "code" not in rendered
    first = rendered["item"][0]
    assert first["text"] == "Falling asleep"
    assert first["answerOption"][0]["valueCoding"] == {
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/ordinalValue", "valueDecimal": 0}
        ],
        "system": ANSWER_VALUE_SYSTEM,
        "code": "0",
    }


def test_follow_up_questions_render_enable_when_any() -> None:
    rendered = render_questionnaire(get_instrument("n2o-neuro"))
    rapid = next(i for i in rendered["item"] if i["linkId"] == "NEURO-RAPID")
    assert rapid["enableBehavior"] == "any"
    assert rapid["enableWhen"][0] == {"question": "NEURO-1", "operator": "=", "answerBoolean": True}


def test_numeric_items_render_bounds_and_units() -> None:
    rendered = render_questionnaire(get_instrument("blood-pressure"))
    systolic = next(i for i in rendered["item"] if i["linkId"] == "bp-systolic")
    assert {e["url"].rsplit("/", 1)[-1]: e for e in systolic["extension"]}["minValue"][
        "valueInteger"
    ] == 50


@pytest.mark.parametrize(
    ("instrument_id", "above", "below"),
    [
        ("home-blood-pressure", "hbp-systolic", "hbp-diastolic"),
        ("blood-pressure", "bp-systolic", "bp-diastolic"),
    ],
)
def test_value_orders_render_as_sdc_target_constraints(
    instrument_id: str, above: str, below: str
) -> None:
    rendered = render_questionnaire(get_instrument(instrument_id))
    [constraint] = Questionnaire.model_validate(rendered).extension or []
    assert constraint.url == "http://hl7.org/fhir/StructureDefinition/targetConstraint"
    parts = {e["url"]: e for e in rendered["extension"][0]["extension"]}
    assert parts["severity"]["valueCode"] == "error"
    assert parts["expression"]["valueExpression"]["language"] == "text/fhirpath"
    expression = parts["expression"]["valueExpression"]["expression"]
    answer = "%resource.repeat(item).where(linkId='{}').answer.value"
    # Checked only when both numbers are given, and then the first must be the greater.
    assert expression == (
        f"{answer.format(above)}.empty() or {answer.format(below)}.empty()"
        f" or {answer.format(above)} > {answer.format(below)}"
    )
    assert parts["human"]["valueString"].startswith("Systolic blood pressure")
    assert parts["location"]["valueString"] == f"item.where(linkId='{above}')"
    # Instruments without a value order carry no constraint.
    assert "extension" not in render_questionnaire(get_instrument("phq9"))


def test_canonical_base_is_configurable() -> None:
    rendered = render_questionnaire(
        get_instrument("gad7"), "https://clinic.example/fhir/Questionnaire"
    )
    assert rendered["url"] == "https://clinic.example/fhir/Questionnaire/gad7"


def fhir_answer(
    instrument: Instrument, link_id: str, value: AnswerValue
) -> QuestionnaireResponseItemAnswer:
    item = instrument.item(link_id)
    assert item is not None
    if item.type == "choice":
        option = next(o for o in item.options if o.value == value)
        coding: dict[str, Any] = (
            {"system": LOINC, "code": option.loinc}
            if option.loinc
            else {"system": ANSWER_VALUE_SYSTEM, "code": str(option.value)}
        )
        return QuestionnaireResponseItemAnswer(valueCoding=Coding.model_validate(coding))
    if item.type == "boolean":
        assert isinstance(value, bool)
        return QuestionnaireResponseItemAnswer(valueBoolean=value)
    assert isinstance(value, int)
    return QuestionnaireResponseItemAnswer(valueInteger=value)


def fhir_response(instrument: Instrument, values: dict[str, AnswerValue]) -> dict[str, Any]:
    response = QuestionnaireResponse(
        status="completed",
        questionnaire=f"{canonical_url(instrument.id)}|{instrument.version}",
        item=[
            QuestionnaireResponseItem(
                linkId=link_id, answer=[fhir_answer(instrument, link_id, value)]
            )
            for link_id, value in values.items()
        ],
    )
    return response.model_dump(mode="json")


ROUND_TRIPS: list[tuple[str, Mapping[str, AnswerValue]]] = [
    ("phq9", numbered("phq9", [1, 2, None, 3, 0, 1, 2, 1, 1, 2])),
    ("phq2", numbered("phq2", [2, 1])),
    ("gad7", numbered("gad7", [3, 2, 1, 0, 1, 2, 3, 1])),
    ("qids-sr16", numbered("qids", [1, 3, 0, 2, 2, 0, 2, 1, 0, 1, 1, 1, 2, 1, 1, 3])),
    ("madrs-s", numbered("madrs-s", [6, 5, 4, 3, 2, 1, 0, 1, 4])),
    ("mnsi-q", {f"mnsi-{n}": n % 3 == 0 for n in range(1, 16)}),
    ("blood-pressure", {"bp-time-point": 2, "bp-systolic": 182, "bp-diastolic": 95}),
    (
        "n2o-neuro",
        {f"NEURO-{n}": n == 4 for n in range(1, 11)}
        | {"NEURO-RAPID": True, "NEURO-BOTH-SIDES": False},
    ),
]


@pytest.mark.parametrize(("instrument_id", "values"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_fhir_questionnaire_response_round_trips_to_the_same_score(
    instrument_id: str, values: dict[str, AnswerValue]
) -> None:
    instrument = get_instrument(instrument_id)
    parsed = parse_questionnaire_response(fhir_response(instrument, values), instrument)
    assert score_submission(parsed) == score_submission(submission(instrument_id, values))


def test_nested_groups_and_stem_items_are_flattened() -> None:
    instrument = get_instrument("phq2")
    resource = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "https://elsewhere.example/Questionnaire/phq2",
        "item": [
            {"linkId": "phq2-stem"},
            {
                "linkId": "group",
                "item": [
                    {"linkId": "phq2-1", "answer": [{"valueInteger": 2}]},
                    {"linkId": "phq2-2", "answer": [{"valueInteger": 1, "item": []}]},
                ],
            },
        ],
    }
    parsed = parse_questionnaire_response(resource, instrument)
    assert parsed.instrument_version == instrument.version
    assert score_submission(parsed).total == 3


def test_stem_answers_are_ignored() -> None:
    instrument = get_instrument("phq2")
    resource = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": canonical_url("phq2"),
        "item": [{"linkId": "phq2-stem", "answer": [{"valueString": "x"}]}],
    }
    assert parse_questionnaire_response(resource, instrument).answers == ()


def problems(resource: dict[str, Any], instrument_id: str = "phq9") -> tuple[AnswerProblem, ...]:
    with pytest.raises(AnswerValidationError) as caught:
        parse_questionnaire_response(resource, get_instrument(instrument_id))
    return caught.value.problems


def response(
    *items: dict[str, Any], questionnaire: str = "urn:interlude:fhir:Questionnaire/phq9"
) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": questionnaire,
        "item": list(items),
    }


def test_parse_rejects_other_resources_and_other_instruments() -> None:
    assert problems({"resourceType": "Patient"}) == (AnswerProblem(code="malformed"),)
    assert problems(response(questionnaire=canonical_url("gad7"))) == (
        AnswerProblem(code="wrong_instrument"),
    )


def test_parse_keeps_the_version_so_validation_can_refuse_it() -> None:
    parsed = parse_questionnaire_response(
        response(questionnaire=canonical_url("phq9") + "|0.9.0"), get_instrument("phq9")
    )
    with pytest.raises(AnswerValidationError) as caught:
        score_submission(parsed)
    assert caught.value.problems == (AnswerProblem(code="wrong_version"),)


def test_parse_reports_malformed_items() -> None:
    assert problems(response({"answer": []})) == (AnswerProblem(code="malformed"),)
    assert problems(response({"linkId": "phq9-1", "answer": ["x"]})) == (
        AnswerProblem(code="malformed", link_id="phq9-1"),
    )
    assert problems({**response(), "item": {}}) == (AnswerProblem(code="malformed"),)


def test_parse_reports_item_problems_without_values() -> None:
    found = problems(
        response(
            {"linkId": "nope", "answer": [{"valueInteger": 1}]},
            {"linkId": "phq9-1", "answer": [{"valueInteger": 1}, {"valueInteger": 2}]},
            {
                "linkId": "phq9-2",
                "answer": [{"valueCoding": {"system": LOINC, "code": "LA0000-0"}}],
            },
            {"linkId": "phq9-3", "answer": [{"valueDate": "2024-01-01"}]},
            {"linkId": "phq9-4", "answer": [{"valueCoding": "LA6568-5"}]},
        )
    )
    assert problems_codes(found) == [
        ("nope", "unknown_item"),
        ("phq9-1", "multiple_answers"),
        ("phq9-2", "not_an_option"),
        ("phq9-3", "wrong_type"),
        ("phq9-4", "wrong_type"),
    ]


def problems_codes(found: tuple[AnswerProblem, ...]) -> list[tuple[str | None, str]]:
    return [(p.link_id, p.code) for p in found]


def test_parse_reads_every_fhir_value_type() -> None:
    coding_on_boolean = response(
        {"linkId": "mnsi-1", "answer": [{"valueCoding": {"code": "0"}}]},
        questionnaire=canonical_url("mnsi-q"),
    )
    assert problems(coding_on_boolean, "mnsi-q") == (
        AnswerProblem(code="wrong_type", link_id="mnsi-1"),
    )
    parsed = parse_questionnaire_response(
        response(
            {"linkId": "phq9-1", "answer": [{"valueCoding": {"code": "LA6569-3"}}]},
            {"linkId": "phq9-2", "answer": [{"valueDecimal": 2}]},
            {"linkId": "phq9-3", "answer": [{"valueString": "often"}]},
            {"linkId": "phq9-4", "answer": [{"valueBoolean": True}]},
        ),
        get_instrument("phq9"),
    )
    assert [(a.link_id, a.value) for a in parsed.answers] == [
        ("phq9-1", 1),
        ("phq9-2", 2.0),
        ("phq9-3", "often"),
        ("phq9-4", True),
    ]
    with pytest.raises(AnswerValidationError) as caught:
        score_submission(parsed)
    assert {p.code for p in caught.value.problems} == {"wrong_type"}


def test_questionnaire_reference_reads_id_and_version() -> None:
    assert questionnaire_reference(
        response(questionnaire="https://x.example/fhir/Questionnaire/gad7/|1.2.3")
    ) == (
        "gad7",
        "1.2.3",
    )


def test_text_decimal_and_choice_follow_ups_render_valid_fhir() -> None:
    rendered = render_questionnaire(demo())
    Questionnaire.model_validate(rendered)
    why = next(i for i in rendered["item"] if i["linkId"] == "why")
    assert why["maxLength"] == 5
    assert why["enableWhen"][0]["answerCoding"]["code"] == "LA1234-5"
    assert "enableBehavior" not in why
    hours = next(i for i in rendered["item"] if i["linkId"] == "hours")
    assert hours["extension"][0] == {
        "url": "http://hl7.org/fhir/StructureDefinition/minValue",
        "valueDecimal": 0,
    }
