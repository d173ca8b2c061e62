"""Request and response bodies of the treatment-session and check-in routes (msgspec)."""

import uuid
from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec

from backend.domain.check_ins.protocols import Modality
from questionnaires.answers import Answer

Minutes = Annotated[int, msgspec.Meta(ge=1, le=600)]
Note = Annotated[str, msgspec.Meta(max_length=20_000)]


class SessionInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A planned (or already held) session. Dose fields by modality: N2O concentration % and
    minutes; IV ketamine mg/kg and minutes; esketamine mg (minutes = in-clinic dosing time)."""

    modality: Modality
    planned_start: datetime
    minutes: Minutes
    course_id: uuid.UUID | None = None
    """None: the patient's active course of this modality (started when there is none)."""
    n2o_concentration_percent: Annotated[int, msgspec.Meta(ge=1, le=70)] | None = None
    ketamine_mg_per_kg: Annotated[float, msgspec.Meta(gt=0, le=5)] | None = None
    esketamine_mg: Annotated[int, msgspec.Meta(ge=1, le=112)] | None = None
    last_in_course: bool = False
    notes: Note | None = None


class SessionReschedule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    planned_start: datetime
    minutes: Minutes | None = None
    last_in_course: bool | None = None


class BloodPressureReading(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    at: datetime
    systolic: Annotated[int, msgspec.Meta(ge=40, le=300)]
    diastolic: Annotated[int, msgspec.Meta(ge=20, le=200)]


SideEffectCode = Literal[
    "nausea",
    "vomiting",
    "headache",
    "dizziness",
    "sedation",
    "dissociation",
    "anxiety",
    "blurred_vision",
    "numbness",
    "feeling_drunk",
]
"""The graded items of the post-session side-effect checklist (clinical-spec §1.9; the patient's
`side-effects` instrument asks the same ten, as `se-<code>` with '-' for '_'): nausea, vomiting,
headache, dizziness or light-headedness, drowsiness/sedation, feeling unreal or detached,
anxiety/panic, blurred vision, numb or tingling mouth/skin, feeling drunk."""

SIDE_EFFECT_CODES: tuple[SideEffectCode, ...] = get_args(SideEffectCode)

SIDE_EFFECT_SEVERITIES = ("none", "mild", "moderate", "severe")
"""Severity 0-3, as the checklist grades it."""


class SideEffect(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An acute side effect a clinician observed at or after the session."""

    code: SideEffectCode
    severity: Annotated[int, msgspec.Meta(ge=0, le=3)]
    """0 none, 1 mild, 2 moderate, 3 severe (0 records that it was asked about and absent)."""
    onset_at: datetime
    """When it began: from the session's start to 72 hours after its end."""
    note: Annotated[str, msgspec.Meta(max_length=2_000)] | None = None
    """Free text: never in a research export unless the export opts in to free text."""


class Observations(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Clinic-entered observations (stored encrypted under the patient's key, as one document:
    a write replaces all of them)."""

    blood_pressure: Annotated[tuple[BloodPressureReading, ...], msgspec.Meta(max_length=100)] = ()
    cadss6: Annotated[int, msgspec.Meta(ge=0, le=24)] | None = None
    """CADSS-6 total: six items scored 0-4."""
    cadss6_at: datetime | None = None
    """When CADSS-6 was rated (peak effect, ~40 min in); optional."""
    sedation_moaas: Annotated[int, msgspec.Meta(ge=0, le=5)] | None = None
    """Sedation on the MOAA/S scale (5 = responds readily to name)."""
    sedation_moaas_at: datetime | None = None
    """When sedation was rated; optional."""
    side_effects: Annotated[tuple[SideEffect, ...], msgspec.Meta(max_length=100)] = ()
    """Acute side effects observed at or after the session."""


class ObservationsInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    observations: Observations | None = None
    discharged_at: datetime | None = None
    rems_monitoring_completed: bool | None = None
    notes: Note | None = None


class SessionCompletion(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The session as held: actual start and end (the ladder is re-timed from the end)."""

    started_at: datetime
    ended_at: datetime
    observations: Observations | None = None
    discharged_at: datetime | None = None
    rems_monitoring_completed: bool | None = None
    notes: Note | None = None
    # A clinician's decision to hold this N2O session despite an active hold (audited).
    override_n2o_hold: bool = False


class SessionView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    course_id: uuid.UUID
    patient_id: uuid.UUID
    modality: Modality
    status: str
    planned_start: datetime
    planned_end: datetime
    started_at: datetime | None
    ended_at: datetime | None
    last_in_course: bool
    n2o_concentration_percent: int | None
    n2o_minutes: int | None
    ketamine_mg_per_kg: float | None
    ketamine_minutes: int | None
    esketamine_mg: int | None
    discharged_at: datetime | None
    rems_monitoring_completed: bool | None
    observations: Observations | None
    notes: str | None
    version: str
    """Changes whenever the session does; send it back as ``If-Match`` (also the ``ETag`` of
    the observations route's answer) so that a stale copy is refused instead of written."""


class CheckInView(msgspec.Struct, frozen=True, kw_only=True):
    """One rung of a patient's ladder as a clinician sees it (what was sent, answered, missed)."""

    id: uuid.UUID
    session_id: uuid.UUID
    step: str
    label: str
    status: str
    priority: str
    instruments: tuple[str, ...]
    answered_instruments: tuple[str, ...]
    opens_at: datetime
    closes_at: datetime
    due_at: datetime
    during_quiet_hours: bool
    merged_into: str | None
    devices_notified: int
    reminders_sent: int
    sent_at: datetime | None
    answered_at: datetime | None
    missed_at: datetime | None
    missed_flag_at: datetime
    # From the app's receipts (`backend.domain.receipts`): the first device to report each.
    received_at: datetime | None = None
    opened_at: datetime | None = None


class PatientSessions(msgspec.Struct, frozen=True, kw_only=True):
    sessions: list[SessionView]


class CheckInLadder(msgspec.Struct, frozen=True, kw_only=True):
    check_ins: list[CheckInView]


class QuestionnaireToAnswer(msgspec.Struct, frozen=True, kw_only=True):
    instrument_id: str
    instrument_version: str
    title: str
    answered: bool


class PatientCheckIn(msgspec.Struct, frozen=True, kw_only=True):
    """What the app shows: answer these questionnaires between `opens_at` and `closes_at`.
    Submissions carry `id` as their `check_in_id`."""

    id: uuid.UUID
    label: str
    due_at: datetime
    opens_at: datetime
    closes_at: datetime
    questionnaires: list[QuestionnaireToAnswer]


class DueCheckIns(msgspec.Struct, frozen=True, kw_only=True):
    now: list[PatientCheckIn]
    """Open and not yet fully answered."""
    next: list[PatientCheckIn]
    """The next few planned ones (may still move if a session is rescheduled)."""


class ScheduleChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A patient's time zone and/or quiet hours ("HH:MM" local; equal start and end = none)."""

    time_zone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    quiet_hours_start: Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] | None = (
        None
    )
    quiet_hours_end: Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] | None = (
        None
    )


class PatientSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """A patient's time zone and quiet hours: what ``PUT .../schedule``'s ETag is a tag of (not
    of `ScheduleView`, whose ``check_ins_moved`` says what one write did, not what is stored)."""

    time_zone: str
    quiet_hours_start: str
    quiet_hours_end: str


class ScheduleView(msgspec.Struct, frozen=True, kw_only=True):
    time_zone: str
    quiet_hours_start: str
    quiet_hours_end: str
    check_ins_moved: int


class ExposureView(msgspec.Struct, frozen=True, kw_only=True):
    """N2O exposure (clinical-spec §5.1), hours as numbers for the dashboard."""

    as_of: datetime
    cumulative_inhalation_hours_28d: float
    peak_cumulative_inhalation_hours_28d: float
    shortest_interval_hours: float | None
    haematological_monitoring_due: bool
    triggers: list[str]


class CourseView(msgspec.Struct, frozen=True, kw_only=True):
    """A treatment course: the protocol it follows (fixed when it started) and its state."""

    id: uuid.UUID
    patient_id: uuid.UUID
    modality: Modality
    status: str
    protocol_id: str
    protocol_version: str
    started_at: datetime | None
    ended_at: datetime | None
    created_at: datetime


class PatientCourses(msgspec.Struct, frozen=True, kw_only=True):
    courses: list[CourseView]


class CourseEnded(msgspec.Struct, frozen=True, kw_only=True):
    course: CourseView
    last_session_id: uuid.UUID | None
    """The session the protocol's follow-up after the last session is planned from."""
    cancelled_session_ids: list[uuid.UUID]
    """Sessions that were still planned for later, cancelled with their unsent check-ins."""


class BaselineInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A course baseline (B0): either a stored response of the patient (`response_id`), or the
    answers of a questionnaire completed in clinic (scored and stored like any submission)."""

    response_id: uuid.UUID | None = None
    instrument_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None
    """With answers: the version answered (default: the newest)."""
    answers: Annotated[tuple[Answer, ...], msgspec.Meta(max_length=200)] | None = None
    authored: datetime | None = None
    """With answers: when the patient answered (default: now); before the first session."""


class BaselineView(msgspec.Struct, frozen=True, kw_only=True):
    """B0 of one trajectory as the alert rules read it."""

    instrument_id: str
    trajectory_key: str
    source: Literal["recorded", "derived"]
    """recorded: a clinician's choice; derived: the last complete score within the rule's days
    before the first session (clinical-spec §2.4)."""
    response_id: uuid.UUID
    instrument_version: str
    total: int
    authored_at: datetime
    recorded_at: datetime | None
    recorded_by: uuid.UUID | None


class CourseBaselines(msgspec.Struct, frozen=True, kw_only=True):
    course_id: uuid.UUID
    first_session_at: datetime | None
    baselines: list[BaselineView]
