"""responses by patient in time order: a patient's history page, the whole-history read of the
alert timer, a submission's course scope (authored since a time) and the research export's pages
(ordered by authored time and id) walk it instead of sorting the patient's rows

Revision ID: d8a2c4e60008
Revises: c6f8b0d20007
Create Date: 2026-11-23 06:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "d8a2c4e60008"
down_revision: str | None = "c6f8b0d20007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_responses_patient_authored",
        "questionnaire_responses",
        ["patient_id", "authored_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_responses_patient_authored", table_name="questionnaire_responses")
