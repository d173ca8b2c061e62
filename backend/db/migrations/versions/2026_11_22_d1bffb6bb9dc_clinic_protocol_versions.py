"""clinic protocol versions (every override a clinic saved, so a course keeps re-planning with
the version it started under); who recorded a course baseline

Revision ID: d1bffb6bb9dc
Revises: 2ed90e7034d2
Create Date: 2026-11-22 23:15:20.679302
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db.types

revision: str = "d1bffb6bb9dc"
down_revision: str | None = "2ed90e7034d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clinic_protocol_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("protocol_id", sa.String(length=64), nullable=False),
        sa.Column("protocol_version", sa.String(length=32), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("saved_by", sa.Uuid(), nullable=True),
        sa.Column("saved_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"]),
        sa.ForeignKeyConstraint(["saved_by"], ["staff.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "clinic_id",
            "modality",
            "protocol_id",
            "protocol_version",
            name="uq_clinic_protocol_versions_version",
        ),
    )
    with op.batch_alter_table("clinic_protocol_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clinic_protocol_versions_clinic_id"), ["clinic_id"], unique=False
        )

    with op.batch_alter_table("course_baselines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recorded_by", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            "fk_course_baselines_recorded_by_staff", "staff", ["recorded_by"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("course_baselines", schema=None) as batch_op:
        batch_op.drop_constraint("fk_course_baselines_recorded_by_staff", type_="foreignkey")
        batch_op.drop_column("recorded_by")

    with op.batch_alter_table("clinic_protocol_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinic_protocol_versions_clinic_id"))

    op.drop_table("clinic_protocol_versions")
