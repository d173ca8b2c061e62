import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class TreatmentCourse(SQLModel, table=True):
    """A patient's course of one modality: it groups sessions and anchors course weeks.

    ``protocol_id``/``protocol_version`` name the check-in protocol the course follows (the
    shipped default of its modality, or the clinic's override), fixed when the course starts so a
    later change of the clinic's protocol does not re-time a course under way.
    """

    __tablename__ = "treatment_courses"
    __table_args__ = (
        CheckConstraint(
            "modality IN ('n2o', 'iv_ketamine', 'esketamine')", name="ck_courses_modality"
        ),
        CheckConstraint("status IN ('active', 'ended')", name="ck_courses_status"),
    )

    id: uuid.UUID = Field(primary_key=True)
    patient_id: uuid.UUID = Field(foreign_key="patients.id", index=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", index=True)
    modality: str = Field(max_length=16)
    protocol_id: str = Field(max_length=64)
    protocol_version: str = Field(max_length=32)
    status: str = Field(default="active", max_length=8)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """Start of the course's first session (None until it has one)."""
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")
    created_at: datetime = Field(sa_type=UTCDateTime)


class CourseBaseline(SQLModel, table=True):
    """The course's baseline (B0) assessment of one instrument: a reference to the response.

    Scores stay encrypted in ``questionnaire_responses``; this row only says which response is
    the course's B0 for an instrument (clinical-spec §2.4 rebound is measured against it). A row
    is a clinician's explicit choice; without one the alert rules derive B0 from the patient's
    last complete score in the days before the first session (``alerts.timeline.course_baseline``).
    """

    __tablename__ = "course_baselines"

    course_id: uuid.UUID = Field(foreign_key="treatment_courses.id", primary_key=True)
    instrument_id: str = Field(max_length=64, primary_key=True)
    response_id: uuid.UUID = Field(foreign_key="questionnaire_responses.id")
    patient_id: uuid.UUID = Field(foreign_key="patients.id", index=True)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    recorded_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")


class TreatmentSession(SQLModel, table=True):
    """One N2O, IV ketamine or esketamine session, planned then started, completed or cancelled.

    Dose and timing stay in plain columns: the timers and the N2O exposure accounting read them
    without a data key (DESIGN §5: plain columns are what scheduling needs). Clinic-entered
    observations (blood-pressure series, CADSS-6, sedation) and the notes are clinical findings,
    so they are ciphertexts under the patient's data key, bound to table, column and row id.
    Discharge time and REMS 2-hour monitoring are operational facts about the visit (the
    esketamine REMS requires them to be recorded) and stay plain.
    """

    __tablename__ = "treatment_sessions"
    __table_args__ = (
        CheckConstraint(
            "modality IN ('n2o', 'iv_ketamine', 'esketamine')", name="ck_sessions_modality"
        ),
        CheckConstraint(
            "status IN ('planned', 'started', 'completed', 'cancelled')",
            name="ck_sessions_status",
        ),
        Index("ix_treatment_sessions_patient_start", "patient_id", "planned_start_at"),
    )

    id: uuid.UUID = Field(primary_key=True)
    course_id: uuid.UUID = Field(foreign_key="treatment_courses.id", index=True)
    patient_id: uuid.UUID = Field(foreign_key="patients.id")
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", index=True)
    modality: str = Field(max_length=16)
    n2o_concentration_percent: int | None = Field(default=None)
    n2o_minutes: int | None = Field(default=None)
    ketamine_mg_per_kg: float | None = Field(default=None)
    ketamine_minutes: int | None = Field(default=None)
    esketamine_mg: int | None = Field(default=None)
    planned_start_at: datetime = Field(sa_type=UTCDateTime)
    planned_end_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default="planned", max_length=12)
    is_last_in_course: bool = Field(default=False)
    discharged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    rems_monitoring_completed: bool | None = Field(default=None)
    observations_ct: bytes | None = Field(default=None, sa_type=LargeBinary)
    notes_ct: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CheckIn(SQLModel, table=True):
    """One planned check-in of a session, merged and cancelled ones included (they are the
    planner's memory: a re-plan undoes a merge from the stored ``planned_*`` layer).

    Two layers, as `backend.domain.check_ins.plans.CheckInPlan`: what the protocol asked
    (``planned_*``, ``nominal_due_at``) and what quiet hours and merging made of it
    (``instruments``, ``opens_at``/``closes_at``, ``due_at``). ``idempotency_key`` is
    ``session:step`` and never re-issued. The claim loop reads ``(status, due_at)``; reminders
    ``(status, next_reminder_at)``; missed marking ``(status, closes_at)``.
    """

    __tablename__ = "check_ins"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_check_ins_idempotency_key"),
        Index("ix_check_ins_due", "status", "due_at"),
        Index("ix_check_ins_reminder", "status", "next_reminder_at"),
        Index("ix_check_ins_closes", "status", "closes_at"),
        Index("ix_check_ins_patient", "patient_id", "due_at"),
        CheckConstraint(
            "status IN ('pending', 'merged', 'cancelled', 'claimed', 'sent', 'answered',"
            " 'missed', 'failed')",
            name="ck_check_ins_status",
        ),
    )

    id: uuid.UUID = Field(primary_key=True)
    idempotency_key: str = Field(max_length=128)
    patient_id: uuid.UUID = Field(foreign_key="patients.id")
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", index=True)
    course_id: uuid.UUID = Field(foreign_key="treatment_courses.id")
    session_id: uuid.UUID = Field(foreign_key="treatment_sessions.id", index=True)
    protocol_id: str = Field(max_length=64)
    protocol_version: str = Field(max_length=32)
    step: str = Field(max_length=64)
    label: str = Field(max_length=120)
    status: str = Field(default="pending", max_length=12)
    # What the protocol asked (the planner's first layer).
    planned_priority: str = Field(max_length=8)
    planned_instruments: list[str] = Field(sa_type=JSON)
    planned_opens_at: datetime = Field(sa_type=UTCDateTime)
    planned_closes_at: datetime = Field(sa_type=UTCDateTime)
    nominal_due_at: datetime = Field(sa_type=UTCDateTime)
    reminder_delays_seconds: list[int] = Field(sa_type=JSON)
    missed_flag_after_seconds: int
    # What quiet hours and merging made of it (the second layer).
    priority: str = Field(max_length=8)
    instruments: list[str] = Field(sa_type=JSON)
    opens_at: datetime = Field(sa_type=UTCDateTime)
    closes_at: datetime = Field(sa_type=UTCDateTime)
    due_at: datetime = Field(sa_type=UTCDateTime)
    during_quiet_hours: bool = Field(default=False)
    reminders_at: list[Any] = Field(sa_type=JSON)
    """ISO 8601 UTC instants."""
    missed_flag_at: datetime = Field(sa_type=UTCDateTime)
    merged_into: str | None = Field(default=None, max_length=128)
    absorbed: list[str] = Field(sa_type=JSON)
    # Delivery state.
    next_reminder_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reminders_sent: int = Field(default=0)
    claimed_by: str | None = Field(default=None, max_length=32)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = Field(default=0)
    devices_notified: int = Field(default=0)
    answered_instruments: list[str] = Field(sa_type=JSON)
    """Instruments answered so far; the check-in is answered when it holds all of them."""
    answered_response_id: uuid.UUID | None = Field(default=None)
    """The response that completed the check-in (no foreign key: it is linked before insert)."""
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    missed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ClinicProtocolOverride(SQLModel, table=True):
    """A clinic's override of a modality's check-in protocol, as the JSON document that
    `backend.domain.check_ins.protocols.decode_override` reads (rules in that module). Stored,
    not a file, so a clinic admin can change it without a deploy; checked when it is saved and
    applied to courses started after that (a course keeps the protocol it started with).
    """

    __tablename__ = "clinic_protocol_overrides"

    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", primary_key=True)
    modality: str = Field(max_length=16, primary_key=True)
    document: bytes = Field(sa_type=LargeBinary)
    updated_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ClinicProtocolVersion(SQLModel, table=True):
    """Every override document a clinic ever saved, by the protocol id and version it produces.

    ``clinic_protocol_overrides`` says which one new courses follow; this history is what a course
    started under an earlier version still re-plans with (a course keeps its protocol), so a
    version, once saved, always means the same document.
    """

    __tablename__ = "clinic_protocol_versions"
    __table_args__ = (
        UniqueConstraint(
            "clinic_id",
            "modality",
            "protocol_id",
            "protocol_version",
            name="uq_clinic_protocol_versions_version",
        ),
    )

    id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", index=True)
    modality: str = Field(max_length=16)
    protocol_id: str = Field(max_length=64)
    protocol_version: str = Field(max_length=32)
    document: str = Field(sa_type=Text)
    """The override as saved (JSON text: a protocol holds no patient data)."""
    saved_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")
    saved_at: datetime = Field(sa_type=UTCDateTime)


class PatientQuietHours(SQLModel, table=True):
    """A patient's own quiet hours (local wall-clock "HH:MM"); no row = the default 21:00-08:00
    (issue 6). Kept beside the patient's ``time_zone``: a change of either re-plans every
    check-in not yet sent."""

    __tablename__ = "patient_quiet_hours"

    patient_id: uuid.UUID = Field(foreign_key="patients.id", primary_key=True)
    starts: str = Field(max_length=5)
    ends: str = Field(max_length=5)
    updated_at: datetime = Field(sa_type=UTCDateTime)
