"""outbox

Revision ID: b2d4f6a80002
Revises: a1c3e5f70001
Create Date: 2026-11-22 20:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db.types

revision: str = "b2d4f6a80002"
down_revision: str | None = "a1c3e5f70001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ts = backend.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient_type", sa.String(length=16), nullable=False),
        sa.Column("recipient_id", sa.String(length=128), nullable=False),
        sa.Column("check_in_id", sa.String(length=64), nullable=True),
        sa.Column("alert_id", sa.String(length=64), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("collapse_key", sa.String(length=128), nullable=True),
        sa.Column("urgency", sa.String(length=8), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _ts, nullable=False),
        sa.Column("expires_at", _ts, nullable=True),
        sa.Column("claimed_by", sa.String(length=32), nullable=True),
        sa.Column("lease_until", _ts, nullable=True),
        sa.Column("last_reason", sa.String(length=32), nullable=True),
        sa.Column("last_http_status", sa.Integer(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("sent_at", _ts, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'claimed', 'sent', 'failed', 'dead', 'cancelled')",
            name="ck_outbox_status",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("outbox_messages") as batch:
        batch.create_index("ix_outbox_due", ["status", "next_attempt_at"])
        batch.create_index(batch.f("ix_outbox_messages_clinic_id"), ["clinic_id"], unique=False)


def downgrade() -> None:
    op.drop_table("outbox_messages")
