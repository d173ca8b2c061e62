"""clinic_time_zone: the clinic's own IANA time zone, for the dashboard's times and "today"

Revision ID: b4c6d8f00012
Revises: a3b5c7e90011
Create Date: 2026-11-24 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b4c6d8f00012"
down_revision: str | None = "a3b5c7e90011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing clinics keep what the dashboard showed them until now (UTC) until an admin sets
    # their zone; a guess from the patients' zones could pick the wrong one without saying so.
    with op.batch_alter_table("clinics", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("time_zone", sa.String(length=64), nullable=False, server_default="UTC")
        )


def downgrade() -> None:
    with op.batch_alter_table("clinics", schema=None) as batch_op:
        batch_op.drop_column("time_zone")
