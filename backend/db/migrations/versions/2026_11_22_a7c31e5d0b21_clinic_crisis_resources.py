"""clinic crisis resources: a clinic's crisis screen content per locale (clinical-spec §5.3)

Revision ID: a7c31e5d0b21
Revises: d1bffb6bb9dc
Create Date: 2026-11-22 23:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db.types

revision: str = "a7c31e5d0b21"
down_revision: str | None = "d1bffb6bb9dc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clinic_crisis_resources",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("headline", sa.String(length=300), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("clinic_contact", sa.String(length=200), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"]),
        sa.ForeignKeyConstraint(["updated_by"], ["staff.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("clinic_id", "locale", name="uq_clinic_crisis_resources_locale"),
    )
    with op.batch_alter_table("clinic_crisis_resources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clinic_crisis_resources_clinic_id"), ["clinic_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("clinic_crisis_resources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinic_crisis_resources_clinic_id"))
    op.drop_table("clinic_crisis_resources")
