"""data keys: per-owner DEKs wrapped by the KEK (backend/keyring)

Revision ID: 7d1bbb34e567
Revises: d73ce2bb65bc
Create Date: 2026-11-22 20:29:42.759329
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db.types

revision: str = "7d1bbb34e567"
down_revision: str | None = "d73ce2bb65bc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("dek_version", sa.Integer(), nullable=False),
        sa.Column("kek_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("retired_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("owner_id", "dek_version"),
    )
    op.create_index("ix_data_keys_kek_id", "data_keys", ["kek_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_data_keys_kek_id", table_name="data_keys")
    op.drop_table("data_keys")
