"""outbox: urgent messages are claimed first, read in index order rather than sorted

Revision ID: c6f8b0d20007
Revises: b4e6a8c00006
Create Date: 2026-11-23 03:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c6f8b0d20007"
down_revision: str | None = "b4e6a8c00006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_due_urgency", "outbox_messages", ["urgency", "status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_due_urgency", table_name="outbox_messages")
