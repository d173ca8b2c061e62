"""staff_last_login: when each staff account last completed a sign-in

Revision ID: a3b5c7e90011
Revises: f2a4b6d80010
Create Date: 2026-11-24 17:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.db.types import UTCDateTime

revision: str = "a3b5c7e90011"
down_revision: str | None = "f2a4b6d80010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: existing accounts show "never" until their next sign-in (the audit
    # log holds the history; copying it here would decide which of its events count).
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_login_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.drop_column("last_login_at")
