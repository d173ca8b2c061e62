import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class OutboxMessage(SQLModel, table=True):
    """A notification to send, written in the same transaction as whatever caused it.

    If the cause commits, the message exists; a crash, a restart or another instance loses
    nothing. Dispatchers on every instance claim due rows with a lease (``FOR UPDATE SKIP LOCKED``
    on PostgreSQL), send, and record the outcome; a row whose lease expired (its instance died)
    is claimed again. Sending is at-least-once; ``idempotency_key`` goes to every provider that
    accepts one so that the rare duplicate collapses.

    No contact details live here: ``recipient_type`` + ``recipient_id`` name a device, a staff
    member or a webhook endpoint, and the address is decrypted only at send time.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # Dispatchers claim urgent messages first (repository.claim_due).
        Index("ix_outbox_due_urgency", "urgency", "status", "next_attempt_at"),
        CheckConstraint(
            "status IN ('pending', 'claimed', 'sent', 'failed', 'dead', 'cancelled')",
            name="ck_outbox_status",
        ),
    )

    id: uuid.UUID = Field(primary_key=True)
    idempotency_key: str = Field(max_length=128, unique=True)
    clinic_id: uuid.UUID | None = Field(default=None, index=True)
    channel: str = Field(max_length=16)
    kind: str = Field(max_length=32)
    recipient_type: str = Field(max_length=16)
    recipient_id: str = Field(max_length=128)
    check_in_id: str | None = Field(default=None, max_length=64)
    alert_id: str | None = Field(default=None, max_length=64)
    task_id: str | None = Field(default=None, max_length=64)
    collapse_key: str | None = Field(default=None, max_length=128)
    urgency: str = Field(default="normal", max_length=8)
    ttl_seconds: int = Field(default=86400)
    status: str = Field(default="pending", max_length=12)
    attempts: int = Field(default=0)
    max_attempts: int = Field(default=8)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    # Past this time the message is worthless (a check-in window closed): it is not sent late.
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=32)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_reason: str | None = Field(default=None, max_length=32)
    last_http_status: int | None = Field(default=None)
    provider_message_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
