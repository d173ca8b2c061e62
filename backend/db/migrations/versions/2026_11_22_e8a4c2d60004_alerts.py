"""alerts: alerts, occurrences (encrypted evidence), N2O session holds, clinic parameter overrides,
on-call lists

Revision ID: e8a4c2d60004
Revises: 55ebc91788b9
Create Date: 2026-11-22 20:50:14.573908
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db.types

revision: str = "e8a4c2d60004"
down_revision: str | None = "55ebc91788b9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_on_call",
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("updated_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
        ),
        sa.PrimaryKeyConstraint("clinic_id", "position"),
        sa.UniqueConstraint("clinic_id", "staff_id", name="uq_alert_on_call_staff"),
    )
    op.create_table(
        "alert_parameter_overrides",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("parameter_set", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["staff.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("clinic_id", "version", name="uq_alert_parameter_overrides_version"),
    )
    with op.batch_alter_table("alert_parameter_overrides", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_parameter_overrides_clinic_id"), ["clinic_id"], unique=False
        )

    op.create_table(
        "alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("care_team_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.String(length=12), nullable=False),
        sa.Column("severity_rank", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("parameter_version", sa.String(length=255), nullable=False),
        sa.Column("occurrence_count", sa.Integer(), nullable=False),
        sa.Column(
            "first_triggered_at", backend.db.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("last_triggered_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("opened_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sla_minutes", sa.Integer(), nullable=True),
        sa.Column("sla_due_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("next_escalation_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.Uuid(), nullable=True),
        sa.Column("resolved_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.Uuid(), nullable=True),
        sa.Column("resolution_ct", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "severity IN ('info', 'routine', 'priority', 'high', 'urgent', 'emergency')",
            name="ck_alerts_severity",
        ),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved')", name="ck_alerts_status"
        ),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"],
            ["staff.id"],
        ),
        sa.ForeignKeyConstraint(
            ["care_team_id"],
            ["care_teams.id"],
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"],
            ["staff.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alerts_clinic_status",
            ["clinic_id", "status", "severity_rank", "opened_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_alerts_escalation_due", ["status", "next_escalation_at"], unique=False
        )
        batch_op.create_index("ix_alerts_patient", ["patient_id", "opened_at"], unique=False)
        batch_op.create_index(
            "uq_alerts_unresolved_dedup",
            ["patient_id", "dedup_key"],
            unique=True,
            postgresql_where=sa.text("status <> 'resolved'"),
            sqlite_where=sa.text("status <> 'resolved'"),
        )

    op.create_table(
        "alert_occurrences",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=True),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("occurrence_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.String(length=12), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("parameter_version", sa.String(length=255), nullable=False),
        sa.Column("patient_action", sa.String(length=48), nullable=True),
        sa.Column("triggered_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("evidence_ct", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "occurrence_key", name="uq_alert_occurrences_key"),
    )
    with op.batch_alter_table("alert_occurrences", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_occurrences_alert_id"), ["alert_id"], unique=False
        )

    op.create_table(
        "n2o_session_holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cleared_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["cleared_by"],
            ["staff.id"],
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("n2o_session_holds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_n2o_session_holds_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(
            "uq_n2o_holds_active",
            ["patient_id"],
            unique=True,
            postgresql_where=sa.text("cleared_at IS NULL"),
            sqlite_where=sa.text("cleared_at IS NULL"),
        )


def downgrade() -> None:
    op.drop_table("n2o_session_holds")
    op.drop_table("alert_occurrences")
    op.drop_table("alerts")
    op.drop_table("alert_parameter_overrides")
    op.drop_table("alert_on_call")
