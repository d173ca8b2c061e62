import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime

# Partial unique indexes: PostgreSQL and SQLite both accept `WHERE` on an index, and the same
# predicate text means the same thing on both.
_UNRESOLVED = text("status <> 'resolved'")
_ACTIVE_HOLD = text("cleared_at IS NULL")


class Alert(SQLModel, table=True):
    """A clinical alert raised by the rules (backend.domain.alerts), owned by a care team.

    Plain columns are what routing, ordering and escalation need: ids, kind, severity, status,
    times. What raised it (scores, answers) is in ``alert_occurrences.evidence_ct``, and the
    clinician's resolution note and outcome in ``resolution_ct``, both encrypted under the
    patient's data key. One unresolved alert per patient and ``dedup_key`` (a partial unique
    index): later triggers of the same kind attach to it as occurrences. Suicidality alerts have a
    dedup key per submission, so every positive submission is its own alert (clinical-spec §5.3).

    Escalation is durable: ``next_escalation_at`` is when the open alert next escalates; the
    timer of any instance picks it up, also after downtime.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="ck_alerts_status"),
        CheckConstraint(
            "severity IN ('info', 'routine', 'priority', 'high', 'urgent', 'emergency')",
            name="ck_alerts_severity",
        ),
        Index(
            "uq_alerts_unresolved_dedup",
            "patient_id",
            "dedup_key",
            unique=True,
            postgresql_where=_UNRESOLVED,
            sqlite_where=_UNRESOLVED,
        ),
        Index("ix_alerts_clinic_status", "clinic_id", "status", "severity_rank", "opened_at"),
        Index("ix_alerts_escalation_due", "status", "next_escalation_at"),
        Index("ix_alerts_patient", "patient_id", "opened_at"),
    )

    id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id")
    patient_id: uuid.UUID = Field(foreign_key="patients.id")
    care_team_id: uuid.UUID | None = Field(default=None, foreign_key="care_teams.id")
    kind: str = Field(max_length=40)
    severity: str = Field(max_length=12)
    # Numeric severity so lists sort most severe first in SQL (candidate.SEVERITY_RANK).
    severity_rank: int
    status: str = Field(default="open", max_length=16)
    dedup_key: str = Field(max_length=255)
    rule_id: str = Field(max_length=64)
    parameter_version: str = Field(max_length=255)
    occurrence_count: int = Field(default=1)
    first_triggered_at: datetime = Field(sa_type=UTCDateTime)
    last_triggered_at: datetime = Field(sa_type=UTCDateTime)
    opened_at: datetime = Field(sa_type=UTCDateTime)
    sla_minutes: int | None = Field(default=None)
    """The service level in force (acknowledge within); also the interval between escalations."""
    sla_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    escalation_level: int = Field(default=0)
    next_escalation_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")
    resolution_ct: bytes | None = Field(default=None, sa_type=LargeBinary)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class AlertOccurrence(SQLModel, table=True):
    """One trigger the rules reported (an `AlertCandidate` seen for the first time).

    The engine is stateless and reports every past trigger again; ``(patient_id,
    occurrence_key)`` is unique, so each trigger is stored, notified and acted on once, also when
    two instances evaluate the same patient at once. Patient-facing triggers (a re-ask, a
    reminder) have no alert. The evidence is encrypted under the patient's data key.
    """

    __tablename__ = "alert_occurrences"
    __table_args__ = (
        UniqueConstraint("patient_id", "occurrence_key", name="uq_alert_occurrences_key"),
    )

    id: uuid.UUID = Field(primary_key=True)
    alert_id: uuid.UUID | None = Field(default=None, foreign_key="alerts.id", index=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id")
    patient_id: uuid.UUID = Field(foreign_key="patients.id")
    occurrence_key: str = Field(max_length=255)
    kind: str = Field(max_length=40)
    severity: str = Field(max_length=12)
    audience: str = Field(max_length=16)
    rule_id: str = Field(max_length=64)
    parameter_version: str = Field(max_length=255)
    patient_action: str | None = Field(default=None, max_length=48)
    triggered_at: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    evidence_ct: bytes = Field(sa_type=LargeBinary)


class N2OSessionHold(SQLModel, table=True):
    """The patient's next N2O session may not start until a clinician clears this (§5.1).

    At most one active hold per patient (a partial unique index); the alert that set it is the
    reason. Starting a held session needs an audited override (``alerts.holds``).
    """

    __tablename__ = "n2o_session_holds"
    __table_args__ = (
        Index(
            "uq_n2o_holds_active",
            "patient_id",
            unique=True,
            postgresql_where=_ACTIVE_HOLD,
            sqlite_where=_ACTIVE_HOLD,
        ),
    )

    id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id")
    patient_id: uuid.UUID = Field(foreign_key="patients.id", index=True)
    alert_id: uuid.UUID = Field(foreign_key="alerts.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    cleared_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cleared_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")


class AlertParameterOverride(SQLModel, table=True):
    """A clinic's override of the alert parameters, one immutable row per version.

    ``document`` is the override JSON (`parameters.build_parameters` shape); the newest row of a
    clinic is in force, and every alert records the merged version it was raised under.
    """

    __tablename__ = "alert_parameter_overrides"
    __table_args__ = (
        UniqueConstraint("clinic_id", "version", name="uq_alert_parameter_overrides_version"),
    )

    id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", index=True)
    parameter_set: str = Field(max_length=64)
    version: str = Field(max_length=64)
    document: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    created_by: uuid.UUID | None = Field(default=None, foreign_key="staff.id")


class AlertOnCallEntry(SQLModel, table=True):
    """A clinic's on-call list: who an unacknowledged alert escalates to, in order."""

    __tablename__ = "alert_on_call"
    __table_args__ = (UniqueConstraint("clinic_id", "staff_id", name="uq_alert_on_call_staff"),)

    clinic_id: uuid.UUID = Field(foreign_key="clinics.id", primary_key=True)
    position: int = Field(primary_key=True)
    staff_id: uuid.UUID = Field(foreign_key="staff.id")
    updated_at: datetime = Field(sa_type=UTCDateTime)
