"""What goes into a research export and what comes out of it.

Input (`PatientTimeline` and its parts): the *plaintext* the export job hands over after
decrypting, one patient at a time, so the pipeline's memory is bounded by one patient's history.
Several fields exist here only so that the de-identification can be shown to drop them (names,
contact details, record numbers, device ids, IP addresses, free text): they must never reach an
output row.

Output (`*Row`): the de-identified rows, one Struct per exported table, and `DeidentifiedBatch`,
the unit the writers stream. Row fields are exactly the exported columns (`codebook.py` describes
each one); nothing else leaves the service.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import msgspec

Sex = Literal["female", "male", "other", "unknown"]
"""Sex as recorded by the clinic (a quasi-identifier, exported unchanged unless suppressed)."""

Modality = Literal["n2o", "ketamine_iv", "esketamine_in"]
"""Treatment modality: inhaled nitrous oxide, IV ketamine, intranasal esketamine."""

MODALITIES: tuple[Modality, ...] = ("n2o", "ketamine_iv", "esketamine_in")

Route = Literal["inhalation", "intravenous", "intranasal", "intramuscular", "oral"]
"""A code, not free text, so that nothing typed by a person reaches an export through it."""

AnswerValue = bool | int | float | str


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    """Input records are immutable: de-identification never edits what it was given."""


class PatientRecord(_Record, frozen=True):
    patient_id: uuid.UUID
    """Internal random id; the only input to the pseudonymous study id (engineering-notes §E.3)."""
    clinic_id: uuid.UUID
    research_consent: bool
    """Only patients whose consent allows research use are exported at all."""
    birth_date: dt.date | None
    sex: Sex
    state: str | None
    """First-level subdivision, ISO 3166-2 (e.g. "US-MA"); Safe Harbor allows a state."""
    zip_code: str | None
    """US ZIP code; at most its first three digits leave, and "000" for sparse areas (§E.1 B)."""
    time_zone: str | None = None
    # Identifying fields (Safe Harbor §164.514(b)(2) A, D-F, H, M, O, R). Never exported.
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    phone: str | None = None
    medical_record_number: str | None = None
    device_tokens: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    app_install_id: str | None = None


class TreatmentCourseRecord(_Record, frozen=True):
    course_id: uuid.UUID
    modality: Modality
    started_at: dt.datetime


class TreatmentSessionRecord(_Record, frozen=True):
    session_id: uuid.UUID
    course_id: uuid.UUID
    modality: Modality
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    dose: float | None = None
    dose_unit: str | None = None
    """UCUM: "mg", "mg/kg", "%" (N2O concentration)."""
    route: Route | None = None
    notes: str | None = None
    """Clinician's free text: never exported (it can contain anything)."""
    device_serial: str | None = None


class ItemAnswerRecord(_Record, frozen=True):
    link_id: str
    value: AnswerValue


class ScoredResponseRecord(_Record, frozen=True):
    response_id: uuid.UUID
    instrument_id: str
    instrument_version: str
    scorer_version: str
    authored_at: dt.datetime
    answers: tuple[ItemAnswerRecord, ...]
    total: int | None
    band: str | None = None
    prorated: bool = False
    missing_items: tuple[str, ...] = ()
    """Scored items left unanswered (`questionnaires.scoring.Score.missing_items`): the total is
    partial whenever there is one, prorated or not (clinical-spec §2.4)."""
    course_id: uuid.UUID | None = None
    """The course the check-in belonged to; None lets the export choose by time."""
    free_text: str | None = None
    """A note typed by the patient: dropped unless the export opts in."""
    source_ip: str | None = None
    device_id: str | None = None


class SideEffectRecord(_Record, frozen=True):
    """An acute side effect a clinician recorded with a session's observations."""

    side_effect_id: uuid.UUID
    code: str
    """Side-effect term from the checklist (e.g. "nausea", "dissociation")."""
    severity: int | None
    onset_at: dt.datetime
    course_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    """The session it was recorded at: its place on the time line is counted from that session
    (None: from the latest session started by the onset)."""
    note: str | None = None
    """Clinician's free text: dropped unless the export opts in to free text."""


SessionMeasure = Literal["blood_pressure", "cadss6", "moaas"]

SESSION_VARIABLES: dict[SessionMeasure, tuple[str, ...]] = {
    "blood_pressure": ("bp_systolic", "bp_diastolic"),
    "cadss6": ("cadss6_total",),
    "moaas": ("moaas",),
}
"""The observation variables of each measure, in the order they are exported."""


class SessionObservationRecord(_Record, frozen=True):
    """One clinic-entered measurement of a session: a blood-pressure reading (two values), the
    CADSS-6 total or the MOAA/S sedation level."""

    observation_id: uuid.UUID
    session_id: uuid.UUID
    course_id: uuid.UUID
    measure: SessionMeasure
    values: tuple[float, ...]
    """In the order of `SESSION_VARIABLES[measure]`."""
    measured_at: dt.datetime | None
    """None: rated at the session, time not recorded."""


class AlertRecord(_Record, frozen=True):
    """A clinical alert as the alerts area stores it: codes and lifecycle times only. The
    clinician's resolution note and the evidence are encrypted and never read by an export."""

    alert_id: uuid.UUID
    kind: str
    """Alert kind as the alert rules name it, e.g. "REBOUND_CONFIRMED", "N2O_NEURO_SYMPTOMS"."""
    severity: str
    rule_id: str
    rule_version: str
    raised_at: dt.datetime
    """When the rule first triggered (the event's place on the treatment time line)."""
    status: str = "open"
    occurrence_count: int = 1
    last_triggered_at: dt.datetime | None = None
    opened_at: dt.datetime | None = None
    acknowledged_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    course_id: uuid.UUID | None = None
    resolution_note: str | None = None
    """Clinician's free text: never exported."""


class PatientTimeline(_Record, frozen=True):
    """Everything exported about one patient."""

    patient: PatientRecord
    courses: tuple[TreatmentCourseRecord, ...]
    sessions: tuple[TreatmentSessionRecord, ...]
    responses: tuple[ScoredResponseRecord, ...] = ()
    side_effects: tuple[SideEffectRecord, ...] = ()
    session_observations: tuple[SessionObservationRecord, ...] = ()
    alerts: tuple[AlertRecord, ...] = ()


# --- de-identified output -------------------------------------------------------------------

ObservationKind = Literal["item", "total", "free_text", "side_effect", "session_observation"]


class _Row(msgspec.Struct, frozen=True, kw_only=True):
    pass


class PatientRow(_Row, frozen=True):
    study_id: str
    age_band: str
    sex: str
    region: str
    modality: str
    n_courses: int
    n_sessions: int
    first_treatment_year: int | None
    rare_flags: str


class SessionRow(_Row, frozen=True):
    study_id: str
    course_index: int
    session_index: int
    modality: str
    dose: float | None
    dose_unit: str | None
    route: Route | None
    duration_minutes: float | None
    hours_since_course_start: float
    day_since_course_start: int
    hours_since_previous_session: float | None
    shifted_start: dt.datetime | None = None


class ObservationRow(_Row, frozen=True):
    """Long format: one measured value per row (an item answer, a total, a side effect, a
    session observation)."""

    study_id: str
    record_id: str
    """Pseudonymous id of the response, side-effect report or session measurement the value
    belongs to (the two values of one blood-pressure reading share it)."""
    kind: ObservationKind
    instrument_id: str | None
    instrument_version: str | None
    scorer_version: str | None
    variable: str
    value: float | None
    value_text: str | None
    band: str | None
    prorated: bool | None
    score_partial: bool | None
    """A total scored with items missing (prorated or not); None on other rows."""
    n_missing_items: int | None
    course_index: int | None
    session_index: int | None
    hours_since_session: float | None
    hours_since_course_start: float | None
    day_since_course_start: int | None
    shifted_time: dt.datetime | None = None


class AlertRow(_Row, frozen=True):
    study_id: str
    record_id: str
    kind: str
    severity: str
    rule_id: str
    rule_version: str
    status: str
    occurrence_count: int
    course_index: int | None
    session_index: int | None
    hours_since_session: float | None
    hours_since_course_start: float | None
    day_since_course_start: int | None
    hours_to_last_trigger: float | None
    hours_to_acknowledged: float | None
    hours_to_resolved: float | None
    shifted_time: dt.datetime | None = None


class DeidentifiedBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The unit the writers stream: the complete rows of one or more patients. A response's rows
    are never split across batches (the FHIR writer groups them into one resource)."""

    patients: tuple[PatientRow, ...] = ()
    sessions: tuple[SessionRow, ...] = ()
    observations: tuple[ObservationRow, ...] = ()
    alerts: tuple[AlertRow, ...] = ()


def merge_batches(batches: list[DeidentifiedBatch]) -> DeidentifiedBatch:
    """Several patients' rows as one batch (writers work best on a few thousand rows at once)."""
    return DeidentifiedBatch(
        patients=tuple(row for batch in batches for row in batch.patients),
        sessions=tuple(row for batch in batches for row in batch.sessions),
        observations=tuple(row for batch in batches for row in batch.observations),
        alerts=tuple(row for batch in batches for row in batch.alerts),
    )
