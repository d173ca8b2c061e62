"""The codebook: every exported column (type, unit, allowed values, meaning), in one place, used
both to build the Parquet/CSV schemas and to write the Frictionless `datapackage.json`
(https://specs.frictionlessdata.io/data-package/, Table Schema), so the files and their
description cannot drift apart (engineering-notes §E.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from backend.domain.exports.deid import DeidentificationProfile
from backend.domain.exports.kanon import SUPPRESSED, KAnonymityReport
from backend.domain.exports.records import MODALITIES
from backend.domain.sessions.schemas import SIDE_EFFECT_CODES

Presence = Literal["always", "date_shift", "free_text"]

_FRICTIONLESS_TYPE = {
    pa.string(): "string",
    pa.int16(): "integer",
    pa.int32(): "integer",
    pa.float64(): "number",
    pa.bool_(): "boolean",
}
TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    unit: str | None = None
    allowed: tuple[str, ...] | None = None
    required: bool = False
    presence: Presence = "always"

    def frictionless(self) -> dict[str, Any]:
        field: dict[str, Any] = {
            "name": self.name,
            "type": "datetime" if self.type == TIMESTAMP else _FRICTIONLESS_TYPE[self.type],
            "description": self.description,
        }
        if self.unit is not None:
            field["unit"] = self.unit
        constraints: dict[str, Any] = {}
        if self.required:
            constraints["required"] = True
        if self.allowed is not None:
            constraints["enum"] = list(self.allowed)
        if constraints:
            field["constraints"] = constraints
        return field


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]

    def columns_for(self, profile: DeidentificationProfile) -> tuple[Column, ...]:
        return tuple(
            c
            for c in self.columns
            if c.presence == "always"
            or (c.presence == "date_shift" and profile.date_shift)
            or (c.presence == "free_text" and profile.include_free_text)
        )

    def schema(self, profile: DeidentificationProfile) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.type, nullable=not c.required) for c in self.columns_for(profile)]
        )


STUDY_ID = Column(
    "study_id",
    pa.string(),
    "Pseudonymous patient id, valid within this export (or this study, with stable ids)",
    required=True,
)
RECORD_ID = Column(
    "record_id",
    pa.string(),
    "Pseudonymous id of the questionnaire response, side-effect report, session measurement "
    "(both values of one blood-pressure reading share it) or alert",
    required=True,
)
COURSE_INDEX = Column(
    "course_index", pa.int32(), "Treatment course number for the patient, 1 = first"
)
SESSION_INDEX = Column(
    "session_index",
    pa.int32(),
    "Number k of the latest treatment session of the course at that time; 0 = before the first. "
    "Session observations and side effects the clinic recorded: the session they were recorded at",
)
HOURS_SINCE_SESSION = Column(
    "hours_since_session",
    pa.float64(),
    "Hours since the start of treatment session k (empty when k = 0, or for a session "
    "observation whose time was not recorded; negative for a reading before the session began)",
    unit="h",
)
HOURS_SINCE_COURSE = Column(
    "hours_since_course_start",
    pa.float64(),
    "Hours since the start of the course (negative before it started)",
    unit="h",
)
DAY_SINCE_COURSE = Column(
    "day_since_course_start",
    pa.int32(),
    "Whole days since the start of the course; 0 = its first 24 hours",
    unit="d",
)
SHIFTED_TIME = Column(
    "shifted_time",
    TIMESTAMP,
    "Limited data set only: the time shifted by a secret per-patient offset (not the real date)",
    presence="date_shift",
)
_WHEN = (COURSE_INDEX, SESSION_INDEX, HOURS_SINCE_SESSION, HOURS_SINCE_COURSE, DAY_SINCE_COURSE)

PATIENTS = Table(
    "patients",
    "One row per patient: the quasi-identifiers, generalised by the k-anonymity gate",
    (
        STUDY_ID,
        Column(
            "age_band",
            pa.string(),
            f"Age at first treatment, banded; 90+ grouped; '{SUPPRESSED}' when generalised away",
            unit="a",
        ),
        Column("sex", pa.string(), "Sex", allowed=("female", "male", "other", "unknown")),
        Column(
            "region",
            pa.string(),
            "State (ISO 3166-2) or first three ZIP digits ('000' for sparse areas), "
            f"'{SUPPRESSED}' when generalised away",
        ),
        Column("modality", pa.string(), "Treatment modalities received, '+'-joined"),
        Column("n_courses", pa.int32(), "Number of treatment courses"),
        Column("n_sessions", pa.int32(), "Number of treatment sessions"),
        Column(
            "first_treatment_year",
            pa.int16(),
            "Calendar year of the first treatment (empty when generalised away). Always empty "
            "with shifted dates: the real year would narrow each patient's secret shift (a "
            "shifted year can be read from the sessions' shifted_start)",
        ),
        Column("rare_flags", pa.string(), "Rare alert kinds ever raised, ','-joined"),
    ),
)

SESSIONS = Table(
    "sessions",
    "One row per treatment session",
    (
        STUDY_ID,
        Column("course_index", pa.int32(), "Treatment course number, 1 = first", required=True),
        Column("session_index", pa.int32(), "Session number within the course", required=True),
        Column("modality", pa.string(), "Treatment modality", allowed=MODALITIES, required=True),
        Column("dose", pa.float64(), "Dose or concentration, in dose_unit"),
        Column("dose_unit", pa.string(), "UCUM unit of dose (mg, mg/kg, % for N2O)"),
        Column(
            "route",
            pa.string(),
            "Route of administration",
            allowed=("inhalation", "intravenous", "intranasal", "intramuscular", "oral"),
        ),
        Column("duration_minutes", pa.float64(), "Duration of the session", unit="min"),
        Column(
            "hours_since_course_start",
            pa.float64(),
            "Hours from the course start to this session",
            unit="h",
            required=True,
        ),
        Column(
            "day_since_course_start",
            pa.int32(),
            "Whole days from the course start; 0 = first 24 hours",
            unit="d",
            required=True,
        ),
        Column(
            "hours_since_previous_session",
            pa.float64(),
            "Hours since the previous session of the course",
            unit="h",
        ),
        Column(
            "shifted_start",
            TIMESTAMP,
            "Limited data set only: session start shifted by a secret per-patient offset",
            presence="date_shift",
        ),
    ),
)

OBSERVATIONS = Table(
    "observations",
    "Long format: one row per item answer, total score, side effect recorded by the clinic or "
    "session observation (see variables for the codes, units and ranges)",
    (
        STUDY_ID,
        RECORD_ID,
        Column(
            "kind",
            pa.string(),
            "What the row holds",
            allowed=("item", "total", "free_text", "side_effect", "session_observation"),
            required=True,
        ),
        Column("instrument_id", pa.string(), "Instrument id (see resources' instruments)"),
        Column("instrument_version", pa.string(), "Instrument version answered"),
        Column("scorer_version", pa.string(), "Version of the scoring code that scored it"),
        Column(
            "variable",
            pa.string(),
            "Item linkId, 'total', the side-effect code or the session observation (variables)",
            required=True,
        ),
        Column(
            "value",
            pa.float64(),
            "Item value (yes = 1, no = 0), total score, side-effect severity (0-3) or the "
            "session observation's value in the variable's unit",
        ),
        Column(
            "value_text",
            pa.string(),
            "Free text, only when the export opted in; may identify: a patient's answer to a "
            "text item (variable: its linkId), a patient's note on the response (variable "
            "'note', after the total), or a clinician's side-effect note (variable "
            "'<code>_note'). In FHIR: the QuestionnaireResponse item's valueString, its "
            "patient-note extension, the side-effect Observation's note",
            presence="free_text",
        ),
        Column("band", pa.string(), "Severity band of the total, by the instrument's bands"),
        Column(
            "prorated",
            pa.bool_(),
            "Total rows: the total replaced missing items by the mean of the answered ones "
            "(a prorated total is also score_partial); empty on other rows",
        ),
        Column(
            "score_partial",
            pa.bool_(),
            "Total rows: some scored item was left unanswered, so the total is partial: prorated, "
            "scored from the answered items (domain-maxima instruments such as QIDS-SR16), or "
            "empty when too many were missing. The clinical rules never treat a partial total as "
            "complete (e.g. it cannot confirm a rebound on its own); exclude or weight such "
            "totals. Empty on other rows",
        ),
        Column(
            "n_missing_items",
            pa.int32(),
            "Total rows: number of scored items left unanswered (0 = complete); which ones: the "
            "item rows absent for this record_id. Empty on other rows",
        ),
        *_WHEN,
        SHIFTED_TIME,
    ),
)

ALERTS = Table(
    "alerts",
    "One row per clinical alert raised by a rule: codes and times relative to treatment and to "
    "the alert's opening; never the evidence or the clinician's notes",
    (
        STUDY_ID,
        RECORD_ID,
        Column("kind", pa.string(), "Alert kind, as the alert rules name it", required=True),
        Column(
            "severity",
            pa.string(),
            "Urgency tier",
            allowed=("info", "routine", "priority", "high", "urgent", "emergency"),
            required=True,
        ),
        Column("rule_id", pa.string(), "Rule that raised it", required=True),
        Column(
            "rule_version",
            pa.string(),
            "Version of the rule's parameters in force (see resources' rules); 'other' when the "
            "clinic's override was not named as a code",
            required=True,
        ),
        Column(
            "status",
            pa.string(),
            "State when exported",
            allowed=("open", "acknowledged", "resolved"),
            required=True,
        ),
        Column(
            "occurrence_count",
            pa.int32(),
            "Triggers attached to this alert (later triggers of the same kind merge into it)",
            required=True,
        ),
        *_WHEN,
        Column(
            "hours_to_last_trigger",
            pa.float64(),
            "Hours from the first to the latest trigger of the alert",
            unit="h",
        ),
        Column(
            "hours_to_acknowledged",
            pa.float64(),
            "Hours from the alert opening to a clinician acknowledging it (empty if not yet)",
            unit="h",
        ),
        Column(
            "hours_to_resolved",
            pa.float64(),
            "Hours from the alert opening to its resolution (empty if not yet)",
            unit="h",
        ),
        SHIFTED_TIME,
    ),
)

TABLES: tuple[Table, ...] = (PATIENTS, SESSIONS, OBSERVATIONS, ALERTS)


@dataclass(frozen=True, slots=True)
class Variable:
    """A `variable` of the observations table that is not an instrument's item: what it
    measures, its unit (UCUM) and range."""

    kind: str
    name: str
    description: str
    minimum: float
    maximum: float
    unit: str | None = None

    def describe(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "kind": self.kind,
            "variable": self.name,
            "description": self.description,
            "minimum": self.minimum,
            "maximum": self.maximum,
        }
        if self.unit is not None:
            found["unit"] = self.unit
        return found


_SEVERITY = "severity 0 none, 1 mild, 2 moderate, 3 severe"
VARIABLES: tuple[Variable, ...] = (
    Variable(
        "session_observation",
        "bp_systolic",
        "Systolic blood pressure (LOINC 8480-6) of one reading, in mmHg, placed at the reading's "
        "time (before the session: negative hours_since_session)",
        40,
        300,
        unit="mm[Hg]",
    ),
    Variable(
        "session_observation",
        "bp_diastolic",
        "Diastolic blood pressure (LOINC 8462-4) of the same reading (same record_id), in mmHg",
        20,
        200,
        unit="mm[Hg]",
    ),
    Variable(
        "session_observation",
        "cadss6_total",
        "CADSS-6 total, clinician-rated dissociation: six items scored 0-4; at the time rated, "
        "or at session k without hours_since_session when no time was recorded",
        0,
        24,
        unit="{score}",
    ),
    Variable(
        "session_observation",
        "moaas",
        "Sedation on the MOAA/S scale (0 = no response to a painful stimulus, 5 = responds "
        "readily to name); timed as cadss6_total",
        0,
        5,
        unit="{score}",
    ),
    *(
        Variable(
            "side_effect",
            code,
            f"Side effect recorded by the clinic at or after session k ({_SEVERITY}), placed at "
            "its onset; the post-session checklist's graded item se-"
            + code.replace("_", "-")
            + " asks the patient the same",
            0,
            3,
        )
        for code in SIDE_EFFECT_CODES
    ),
)

SIDE_EFFECT_SOURCES = (
    "Side effects come two ways. Recorded by the clinic with a session: kind 'side_effect', "
    "variable the code, value the severity, placed at the onset (a clinician's note on it is "
    "free text: variable '<code>_note', only when the export opted in). Reported by the "
    "patient on the post-session checklist (instrument 'side-effects'): item answers, kind "
    "'item', variables 'se-<code>' (graded 0-3) and its yes/no red-flag items (yes = 1), "
    "placed at the time answered."
)


@dataclass(frozen=True, slots=True)
class InstrumentUsed:
    instrument_id: str
    instrument_version: str
    scorer_version: str
    title: str | None
    loinc_panel: str | None
    loinc_total: str | None
    licence_notice: str | None


def datapackage(
    *,
    name: str,
    profile: DeidentificationProfile,
    k_anonymity: KAnonymityReport,
    resources: Sequence[tuple[Table, str, str]],
    row_counts: Mapping[str, int],
    instruments: Sequence[InstrumentUsed],
    rules: Sequence[tuple[str, str]],
    software_version: str,
) -> dict[str, Any]:
    """The Frictionless Data Package descriptor. `resources` lists (table, path, format) for each
    data file written; custom properties carry the provenance a statistician needs."""
    return {
        "profile": "tabular-data-package",
        "name": name,
        "title": "Interlude de-identified research export",
        "resources": [
            {
                "name": f"{table.name}-{file_format}",
                "path": path,
                "profile": "tabular-data-resource",
                "format": file_format,
                "mediatype": "text/csv"
                if file_format == "csv"
                else "application/vnd.apache.parquet",
                "description": table.description,
                "rows": row_counts.get(table.name, 0),
                "schema": {
                    "fields": [c.frictionless() for c in table.columns_for(profile)],
                    "missingValues": [""],
                },
            }
            for table, path, file_format in resources
        ],
        "instruments": [
            {
                "id": i.instrument_id,
                "version": i.instrument_version,
                "scorer_version": i.scorer_version,
                "title": i.title,
                "loinc_panel": i.loinc_panel,
                "loinc_total": i.loinc_total,
                "licence": i.licence_notice,
            }
            for i in instruments
        ],
        "rules": [{"id": rule_id, "version": version} for rule_id, version in rules],
        "variables": [variable.describe() for variable in VARIABLES],
        "side_effects": SIDE_EFFECT_SOURCES,
        "deidentification": deidentification_summary(profile),
        "k_anonymity": {
            "k_required": k_anonymity.k_required,
            "k_achieved": k_anonymity.k_achieved,
            "quasi_identifiers": list(k_anonymity.quasi_identifiers),
            "generalisation_step": k_anonymity.generalisation_step,
            "generalisation": generalisation(k_anonymity, profile),
            "patients_considered": k_anonymity.patients_considered,
            "patients_suppressed": k_anonymity.patients_suppressed,
            "classes": k_anonymity.classes,
            "classes_suppressed": k_anonymity.classes_suppressed,
        },
        "software": {"name": "interlude", "version": software_version},
    }


def generalisation(
    k_anonymity: KAnonymityReport, profile: DeidentificationProfile
) -> dict[str, str]:
    """How coarsely each quasi-identifier left, as the gate chose; with shifted dates the real
    first-treatment year does not leave at all (`deid.quasi_identifiers`)."""
    found = dict(k_anonymity.generalisation)
    if profile.date_shift and "first_treatment_year" in found:
        found["first_treatment_year"] = "not exported (dates shifted)"
    return found


def deidentification_summary(profile: DeidentificationProfile) -> dict[str, Any]:
    return {
        "classification": profile.classification,
        "limited_data_set": profile.date_shift,
        "method": "HIPAA Safe Harbor, 45 CFR 164.514(b)(2), applied in the application",
        "study_ids": "HMAC-SHA256 of an internal random id, "
        + (
            "key per export (not linkable)" if profile.id_scope == "per_export" else "key per study"
        ),
        "free_text": "included" if profile.include_free_text else "dropped",
        "dates": "shifted per patient (limited data set)"
        if profile.date_shift
        else "removed; time relative to course start and treatment session",
        "ages": "bands at first treatment, 90+ grouped",
        "removed": [
            "names",
            "contact details",
            "record numbers",
            "device ids",
            "IP addresses",
            "internal ids",
            "exact dates",
            *(() if profile.include_free_text else ("free text",)),
        ],
    }
