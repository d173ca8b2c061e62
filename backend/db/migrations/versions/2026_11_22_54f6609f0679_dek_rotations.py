"""dek rotations: one row per `interlude keys rotate-deks` run (progress only)

Revision ID: 54f6609f0679
Revises: 7c06c7be46ab
Create Date: 2026-11-22 21:18:13.260073
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db.types

revision: str = "54f6609f0679"
down_revision: str | None = "7c06c7be46ab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dek_rotations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("started_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("owners_total", sa.Integer(), nullable=False),
        sa.Column("owners_done", sa.Integer(), nullable=False),
        sa.Column("rows_reencrypted", sa.BigInteger(), nullable=False),
        sa.Column("versions_destroyed", sa.BigInteger(), nullable=False),
        sa.Column("rows_unreadable", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("dek_rotations")
