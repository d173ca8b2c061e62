"""De-identified rows as FHIR R4 resources for a Bulk Data (Flat FHIR) NDJSON export
(http://hl7.org/fhir/uv/bulkdata/): Patient, QuestionnaireResponse, Observation (totals with
LOINC where the instrument has one, and extensions `score-partial`, `missing-items` and
`score-prorated` saying whether the total is partial; side effects the clinic recorded; session
observations: blood pressure as the vital-signs panel LOINC 85354-9 with systolic 8480-6 and
diastolic 8462-4 in mm[Hg], CADSS-6 and MOAA/S), MedicationAdministration (sessions, which
session observations and side effects are `partOf`), Flag (clinical alerts: kind, severity,
rule and version, times relative to treatment and to the alert's opening).

Free text leaves only when the export opted in: a text item's answer as the
QuestionnaireResponse item's `valueString`, a patient's note on a response as its
`patient-note` extension, a clinician's side-effect note as the Observation's `note`.

Resources carry no calendar date: times are extensions relative to the course and session, and
required dates are marked absent with the data-absent-reason "masked". Only a limited data set
(date shift on) carries shifted `authored` / `effective` times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from functools import cache
from itertools import groupby
from typing import Any

from backend.domain.exports.records import AlertRow, ObservationRow, PatientRow, SessionRow
from questionnaires.errors import UnknownInstrumentError
from questionnaires.fhir import ANSWER_VALUE_SYSTEM, LOINC, canonical_url
from questionnaires.model import Instrument
from questionnaires.registry import get_instrument

EXTENSION_BASE = "urn:interlude:fhir:StructureDefinition"
SCORE_SYSTEM = "urn:interlude:fhir:CodeSystem:score"
PATIENT_NOTE = f"{EXTENSION_BASE}:patient-note"
"""A note the patient wrote on a response (free text: only when the export opted in)."""
SIDE_EFFECT_SYSTEM = "urn:interlude:fhir:CodeSystem:side-effect"
SESSION_OBSERVATION_SYSTEM = "urn:interlude:fhir:CodeSystem:session-observation"
SIDE_EFFECT_CHECKLIST = "side-effects"
MODALITY_SYSTEM = "urn:interlude:fhir:CodeSystem:modality"
ALERT_KIND_SYSTEM = "urn:interlude:fhir:CodeSystem:alert-kind"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
UCUM = "http://unitsofmeasure.org"

_MODALITY_TEXT = {
    "n2o": "Nitrous oxide, inhaled",
    "ketamine_iv": "Ketamine, intravenous",
    "esketamine_in": "Esketamine, intranasal",
}
_MASKED = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}
_SEVERITY = ("none", "mild", "moderate", "severe")
_MM_HG = {"unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}
_BLOOD_PRESSURE = {
    "bp_systolic": ("8480-6", "Systolic blood pressure"),
    "bp_diastolic": ("8462-4", "Diastolic blood pressure"),
}
_RATINGS = {
    "cadss6_total": ("CADSS-6 total score (dissociation, 0-24)", "survey"),
    "moaas": ("MOAA/S sedation level (0-5, 5 = responds readily to name)", "exam"),
}


def _instant(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _subject(study_id: str) -> dict[str, str]:
    return {"reference": f"Patient/{study_id}"}


def _timing_extensions(
    course_index: int | None,
    session_index: int | None,
    hours_since_session: float | None,
    hours_since_course_start: float | None,
) -> list[dict[str, Any]]:
    values: list[tuple[str, str, int | float | None]] = [
        ("course-index", "valueInteger", course_index),
        ("session-index", "valueInteger", session_index),
        ("hours-since-session", "valueDecimal", hours_since_session),
        ("hours-since-course-start", "valueDecimal", hours_since_course_start),
    ]
    return [
        {"url": f"{EXTENSION_BASE}:{name}", key: value}
        for name, key, value in values
        if value is not None
    ]


def patient_resource(row: PatientRow) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": row.study_id,
        "gender": row.sex,
        "extension": [{"url": f"{EXTENSION_BASE}:age-band", "valueString": row.age_band}],
    }


def medication_administration(row: SessionRow) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": f"{row.study_id}-c{row.course_index}-s{row.session_index}",
        "extension": _timing_extensions(
            row.course_index, row.session_index, None, row.hours_since_course_start
        ),
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": MODALITY_SYSTEM,
                    "code": row.modality,
                    "display": _MODALITY_TEXT[row.modality],
                }
            ],
            "text": _MODALITY_TEXT[row.modality],
        },
        "subject": _subject(row.study_id),
        "effectivePeriod": _MASKED
        if row.shifted_start is None
        else {"start": _instant(row.shifted_start)},
    }
    dosage: dict[str, Any] = {}
    if row.route is not None:
        dosage["route"] = {"text": row.route}
    if row.dose is not None:
        dose: dict[str, Any] = {"value": row.dose}
        if row.dose_unit is not None:
            dose |= {"unit": row.dose_unit, "system": UCUM, "code": row.dose_unit}
        dosage["dose"] = dose
    if dosage:
        resource["dosage"] = dosage
    return resource


def _instrument(instrument_id: str | None, version: str | None) -> Instrument | None:
    if instrument_id is None or version is None:
        return None
    try:
        return get_instrument(instrument_id, version)
    except UnknownInstrumentError:
        return None


def _answer(instrument: Instrument | None, row: ObservationRow) -> dict[str, Any]:
    if row.kind == "free_text":
        return {"valueString": row.value_text or ""}
    item = None if instrument is None else instrument.item(row.variable)
    value = row.value if row.value is not None else 0.0
    if item is not None and item.type == "choice":
        option = next((o for o in item.options if o.value == int(value)), None)
        if option is not None:
            return {
                "valueCoding": {
                    "system": LOINC if option.loinc is not None else ANSWER_VALUE_SYSTEM,
                    "code": option.loinc if option.loinc is not None else str(option.value),
                }
            }
    if item is not None and item.type == "boolean":
        return {"valueBoolean": value == 1}
    if item is not None and item.type == "integer" and value.is_integer():
        return {"valueInteger": int(value)}
    return {"valueDecimal": value}


def _response_resources(rows: Sequence[ObservationRow]) -> Iterator[dict[str, Any]]:
    first = rows[0]
    instrument = _instrument(first.instrument_id, first.instrument_version)
    timing = _timing_extensions(
        first.course_index,
        first.session_index,
        first.hours_since_session,
        first.hours_since_course_start,
    )
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": first.record_id,
        "extension": [
            *timing,
            {"url": f"{EXTENSION_BASE}:scorer-version", "valueString": first.scorer_version},
        ],
        "questionnaire": f"{canonical_url(first.instrument_id or 'unknown')}"
        f"|{first.instrument_version}",
        "status": "completed",
        "subject": _subject(first.study_id),
    }
    if first.shifted_time is not None:
        response["authored"] = _instant(first.shifted_time)
    # A response's rows are its answers, its total, then a note the patient wrote on the
    # response (free text, only with the opt-in): told apart by place, not by name, so that a
    # text item whose linkId is "note" stays an answer.
    end = next((n for n, row in enumerate(rows) if row.kind == "total"), len(rows))
    items = [
        {"linkId": row.variable, "answer": [_answer(instrument, row)]}
        for row in rows[:end]
        if row.kind in ("item", "free_text")
    ]
    if items:
        response["item"] = items
    # R4's QuestionnaireResponse has no `note`, and the note answers no item of the
    # questionnaire: an extension.
    response["extension"] += [
        {"url": PATIENT_NOTE, "valueString": row.value_text}
        for row in rows[end + 1 :]
        if row.kind == "free_text" and row.value_text
    ]
    yield response
    for row in rows[end : end + 1]:
        if row.value is not None:
            yield _total_observation(row, instrument, timing)


def _total_observation(
    row: ObservationRow, instrument: Instrument | None, timing: list[dict[str, Any]]
) -> dict[str, Any]:
    coding = [{"system": SCORE_SYSTEM, "code": f"{row.instrument_id}-total"}]
    if instrument is not None and instrument.loinc_total is not None:
        coding.insert(0, {"system": LOINC, "code": instrument.loinc_total})
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{row.record_id}-total",
        "extension": [*timing, *_completeness_extensions(row)],
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
        "code": {"coding": coding, "text": f"{row.instrument_id} total score"},
        "subject": _subject(row.study_id),
        "valueInteger": int(row.value or 0),
        "derivedFrom": [{"reference": f"QuestionnaireResponse/{row.record_id}"}],
    }
    if row.band is not None:
        resource["interpretation"] = [{"text": row.band}]
    if row.shifted_time is not None:
        resource["effectiveDateTime"] = _instant(row.shifted_time)
    return resource


def _completeness_extensions(row: ObservationRow) -> list[dict[str, Any]]:
    """Whether a total is partial, as the observations table's `score_partial`,
    `n_missing_items` and `prorated`. Extensions, because the value is present and final:
    `dataAbsentReason` is for a missing value, and `interpretation` reads the value clinically
    (the band is there)."""
    values: list[tuple[str, str, bool | int | None]] = [
        ("score-partial", "valueBoolean", row.score_partial),
        ("missing-items", "valueInteger", row.n_missing_items),
        ("score-prorated", "valueBoolean", row.prorated),
    ]
    return [
        {"url": f"{EXTENSION_BASE}:{name}", key: value}
        for name, key, value in values
        if value is not None
    ]


@cache
def _side_effect_display(code: str) -> str:
    """The checklist's wording of the side effect (the clinic records the same ten items)."""
    try:
        checklist = get_instrument(SIDE_EFFECT_CHECKLIST)
    except UnknownInstrumentError:
        return code
    item = checklist.item(f"se-{code.replace('_', '-')}")
    return code if item is None else item.topic


def _at_session(row: ObservationRow) -> dict[str, Any]:
    """What every Observation of a session carries: the treatment-relative times, the session
    it belongs to (the MedicationAdministration of session k), the subject and, in a limited
    data set only, the shifted time."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": row.record_id,
        "extension": _timing_extensions(
            row.course_index,
            row.session_index,
            row.hours_since_session,
            row.hours_since_course_start,
        ),
        "status": "final",
    }
    if row.course_index is not None and row.session_index:
        session = f"{row.study_id}-c{row.course_index}-s{row.session_index}"
        resource["partOf"] = [{"reference": f"MedicationAdministration/{session}"}]
    resource["subject"] = _subject(row.study_id)
    if row.shifted_time is not None:
        resource["effectiveDateTime"] = _instant(row.shifted_time)
    return resource


def _side_effect_observation(
    row: ObservationRow, notes: Sequence[ObservationRow]
) -> dict[str, Any]:
    display = _side_effect_display(row.variable)
    resource = _at_session(row)
    resource["category"] = [{"text": "side effect"}]
    resource["code"] = {
        "coding": [{"system": SIDE_EFFECT_SYSTEM, "code": row.variable, "display": display}],
        "text": display,
    }
    if row.value is not None:
        resource["valueInteger"] = int(row.value)
        if 0 <= int(row.value) < len(_SEVERITY):
            resource["interpretation"] = [{"text": _SEVERITY[int(row.value)]}]
    # Only present when the export opted in to free text.
    texts = [{"text": n.value_text} for n in notes if n.value_text]
    if texts:
        resource["note"] = texts
    return resource


def _session_observation(rows: Sequence[ObservationRow]) -> dict[str, Any]:
    """One measurement: a blood-pressure reading (the vital-signs panel with its two
    components), a CADSS-6 total or a MOAA/S level."""
    first = rows[0]
    resource = _at_session(first)
    if first.variable in _BLOOD_PRESSURE:
        resource["category"] = [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}
        ]
        resource["code"] = {
            "coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}],
            "text": "Blood pressure",
        }
        resource["component"] = [
            {
                "code": {
                    "coding": [{"system": LOINC, "code": code, "display": display}],
                    "text": display,
                },
                "valueQuantity": {"value": row.value, **_MM_HG},
            }
            for row in rows
            for code, display in (_BLOOD_PRESSURE[row.variable],)
            if row.value is not None
        ]
        return resource
    display, category = _RATINGS.get(first.variable, (first.variable, "exam"))
    resource["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}]
    resource["code"] = {
        "coding": [{"system": SESSION_OBSERVATION_SYSTEM, "code": first.variable}],
        "text": display,
    }
    if first.value is not None:
        resource["valueInteger"] = int(first.value)
    return resource


def observation_resources(rows: Sequence[ObservationRow]) -> Iterator[dict[str, Any]]:
    """QuestionnaireResponses with their total Observations, side-effect Observations and
    session Observations. The rows of one record must be consecutive (as `deidentify`
    produces them)."""
    for (record_id, is_response), group in groupby(
        rows, key=lambda r: (r.record_id, r.instrument_id is not None)
    ):
        del record_id
        members = list(group)
        if is_response:
            yield from _response_resources(members)
        elif members[0].kind == "session_observation":
            yield _session_observation(members)
        else:
            notes = [r for r in members if r.kind == "free_text"]
            yield from (
                _side_effect_observation(r, notes) for r in members if r.kind == "side_effect"
            )


def flag(row: AlertRow) -> dict[str, Any]:
    """A clinical alert as a FHIR Flag: active until resolved. Nothing of its evidence or notes."""
    extras: list[tuple[str, str, str | int | float | None]] = [
        ("alert-severity", "valueCode", row.severity),
        ("alert-rule", "valueString", row.rule_id),
        ("alert-rule-version", "valueString", row.rule_version),
        ("alert-status", "valueCode", row.status),
        ("alert-occurrence-count", "valueInteger", row.occurrence_count),
        ("hours-to-last-trigger", "valueDecimal", row.hours_to_last_trigger),
        ("hours-to-acknowledged", "valueDecimal", row.hours_to_acknowledged),
        ("hours-to-resolved", "valueDecimal", row.hours_to_resolved),
    ]
    resource: dict[str, Any] = {
        "resourceType": "Flag",
        "id": row.record_id,
        "extension": [
            *_timing_extensions(
                row.course_index,
                row.session_index,
                row.hours_since_session,
                row.hours_since_course_start,
            ),
            *(
                {"url": f"{EXTENSION_BASE}:{name}", key: value}
                for name, key, value in extras
                if value is not None
            ),
        ],
        "status": "inactive" if row.status == "resolved" else "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY, "code": "clinical"}]}],
        "code": {"coding": [{"system": ALERT_KIND_SYSTEM, "code": row.kind}], "text": row.kind},
        "subject": _subject(row.study_id),
    }
    if row.shifted_time is not None:
        resource["period"] = {"start": _instant(row.shifted_time)}
    return resource
