"""responses by patient and instrument: a submission reads the answers to its instrument just
before it (re-ask pairing) and the latest B12 risk answers without scanning the patient's history

Revision ID: b4e6a8c00006
Revises: a7c31e5d0b21
Create Date: 2026-11-23 03:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b4e6a8c00006"
down_revision: str | None = "a7c31e5d0b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_responses_patient_instrument",
        "questionnaire_responses",
        ["patient_id", "instrument_id", "authored_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_responses_patient_instrument", table_name="questionnaire_responses")
