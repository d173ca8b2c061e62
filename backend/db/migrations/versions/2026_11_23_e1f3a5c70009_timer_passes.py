"""timer_passes: a cluster-wide timer pass (alert evaluation) is claimed by one instance per
interval instead of being run by every replica

Revision ID: e1f3a5c70009
Revises: d8a2c4e60008
Create Date: 2026-11-23 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.db.types import UTCDateTime

revision: str = "e1f3a5c70009"
down_revision: str | None = "d8a2c4e60008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "timer_passes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("due_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("claimed_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("timer_passes")
