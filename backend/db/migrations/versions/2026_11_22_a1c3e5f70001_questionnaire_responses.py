"""questionnaire responses

Revision ID: a1c3e5f70001
Revises: 79d8e7475f76
Create Date: 2026-11-22 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db.types

revision: str = "a1c3e5f70001"
down_revision: str | None = "79d8e7475f76"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "questionnaire_responses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("check_in_id", sa.Uuid(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("instrument_id", sa.String(length=64), nullable=False),
        sa.Column("instrument_version", sa.String(length=32), nullable=False),
        sa.Column("trajectory_key", sa.String(length=64), nullable=False),
        sa.Column("scorer_version", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("authored_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("answers_ct", sa.LargeBinary(), nullable=False),
        sa.Column("score_ct", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("source IN ('app', 'fhir', 'clinician')", name="ck_responses_source"),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"]),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "patient_id", "idempotency_key", name="uq_responses_patient_idempotency"
        ),
    )
    with op.batch_alter_table("questionnaire_responses") as batch:
        batch.create_index("ix_responses_check_in", ["check_in_id"])
        batch.create_index(
            "ix_responses_patient_trajectory", ["patient_id", "trajectory_key", "authored_at"]
        )
        batch.create_index(
            batch.f("ix_questionnaire_responses_clinic_id"), ["clinic_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("questionnaire_responses")
