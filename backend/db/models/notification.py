import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class NotificationReceipt(SQLModel, table=True):
    """The companion app saying a notification reached the phone ("received") or was tapped
    ("opened"). One row per message and event: the app retries freely (idempotent), and the first
    report's time is the one kept. ``check_in_id`` is copied from the outbox row so the ladder and
    the fallback timer find a check-in's receipts with one index lookup."""

    __tablename__ = "notification_receipts"
    __table_args__ = (
        CheckConstraint("event IN ('received', 'opened')", name="ck_notification_receipts_event"),
    )

    message_id: uuid.UUID = Field(primary_key=True)  # no FK: outbox rows may be pruned
    event: str = Field(max_length=10, primary_key=True)
    patient_id: uuid.UUID = Field(foreign_key="patients.id", index=True)
    check_in_id: str | None = Field(default=None, max_length=64, index=True)
    recorded_at: datetime = Field(sa_type=UTCDateTime)


class PatientNotificationPreference(SQLModel, table=True):
    """How a patient wants to be reached, in order of preference (``push``, ``sms``). No row means
    push only: SMS goes to a phone number, so it needs the patient's explicit opt-in. Quiet hours
    live in ``patient_quiet_hours`` (they also move check-ins); this row holds channels only."""

    __tablename__ = "patient_notification_preferences"

    patient_id: uuid.UUID = Field(foreign_key="patients.id", primary_key=True)
    channels: list[Any] = Field(sa_type=JSON)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    updated_by: uuid.UUID | None = Field(default=None)


class StaffNotificationPreference(SQLModel, table=True):
    """How a clinician is reached (``email`` or a named clinic ``webhook`` such as their pager)
    and whether they are on call. Off call, routine messages wait until they are back on call;
    urgent ones still go (the escalation ladder reaches whoever is on the clinic's list)."""

    __tablename__ = "staff_notification_preferences"
    __table_args__ = (
        CheckConstraint(
            "channel IN ('email', 'webhook')", name="ck_staff_notification_preferences_channel"
        ),
    )

    staff_id: uuid.UUID = Field(foreign_key="staff.id", primary_key=True)
    channel: str = Field(default="email", max_length=16)
    webhook_endpoint: str | None = Field(default=None, max_length=64)
    on_call: bool = Field(default=True)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class CheckInFallback(SQLModel, table=True):
    """A check-in notification being watched for a receipt. Written with the first CHECK_IN_DUE
    outbox row (same transaction); a timer on every instance claims due rows with a lease and
    takes the next step (re-send, SMS, a task for staff) until a receipt, an answer or the
    window's close ends it. ``step`` counts the steps taken; advancing it is compare-and-swap, so
    each step happens once however many replicas run the timer."""

    __tablename__ = "check_in_fallbacks"
    __table_args__ = (
        Index("ix_check_in_fallbacks_due", "status", "next_at"),
        CheckConstraint(
            "status IN ('watching', 'confirmed', 'finished', 'closed')",
            name="ck_check_in_fallbacks_status",
        ),
    )

    check_in_id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID | None = Field(default=None)
    first_sent_at: datetime = Field(sa_type=UTCDateTime)
    closes_at: datetime = Field(sa_type=UTCDateTime)
    step: int = Field(default=0)
    status: str = Field(default="watching", max_length=12)
    next_at: datetime = Field(sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=32)
    claimed_by: str | None = Field(default=None, max_length=32)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class StaffTask(SQLModel, table=True):
    """Something a person in the clinic must do: the last rung of channel fallback ("this patient
    could not be reached for a check-in: call them"). One per check-in and kind."""

    __tablename__ = "staff_tasks"
    __table_args__ = (
        UniqueConstraint("kind", "check_in_id", name="uq_staff_tasks_kind_check_in"),
        Index("ix_staff_tasks_open", "clinic_id", "completed_at"),
    )

    id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id")
    patient_id: uuid.UUID = Field(foreign_key="patients.id", index=True)
    check_in_id: uuid.UUID | None = Field(default=None)
    kind: str = Field(max_length=32)
    created_at: datetime = Field(sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_by: uuid.UUID | None = Field(default=None)
