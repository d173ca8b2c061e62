"""export_study_invitations: a clinic joins a research study only when a member invited it

Revision ID: f2a4b6d80010
Revises: e1f3a5c70009
Create Date: 2026-11-24 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.db.types import UTCDateTime

revision: str = "f2a4b6d80010"
down_revision: str | None = "e1f3a5c70009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "export_study_invitations",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("invited_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"]),
        sa.ForeignKeyConstraint(["study_id"], ["export_studies.id"]),
        sa.PrimaryKeyConstraint("study_id", "clinic_id"),
    )
    op.create_index(
        op.f("ix_export_study_invitations_clinic_id"),
        "export_study_invitations",
        ["clinic_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_export_study_invitations_clinic_id"), table_name="export_study_invitations"
    )
    op.drop_table("export_study_invitations")
