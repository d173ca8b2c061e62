"""treatment sessions and check-ins: courses, course baselines, sessions, check-in rows (both plan
layers, delivery state), clinic protocol overrides, patient quiet hours

Revision ID: 55ebc91788b9
Revises: c5e7a9b10003
Create Date: 2026-11-22 20:49:18.327613
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db.types

revision: str = "55ebc91788b9"
down_revision: str | None = "c5e7a9b10003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "patient_quiet_hours",
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("starts", sa.String(length=5), nullable=False),
        sa.Column("ends", sa.String(length=5), nullable=False),
        sa.Column("updated_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("patient_id"),
    )
    op.create_table(
        "clinic_protocol_overrides",
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.Column("updated_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"],
            ["staff.id"],
        ),
        sa.PrimaryKeyConstraint("clinic_id", "modality"),
    )
    op.create_table(
        "treatment_courses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("protocol_id", sa.String(length=64), nullable=False),
        sa.Column("protocol_version", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("started_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "modality IN ('n2o', 'iv_ketamine', 'esketamine')", name="ck_courses_modality"
        ),
        sa.CheckConstraint("status IN ('active', 'ended')", name="ck_courses_status"),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["staff.id"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("treatment_courses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_treatment_courses_clinic_id"), ["clinic_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_treatment_courses_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "course_baselines",
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("instrument_id", sa.String(length=64), nullable=False),
        sa.Column("response_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["treatment_courses.id"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["questionnaire_responses.id"],
        ),
        sa.PrimaryKeyConstraint("course_id", "instrument_id"),
    )
    with op.batch_alter_table("course_baselines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_course_baselines_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "treatment_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("n2o_concentration_percent", sa.Integer(), nullable=True),
        sa.Column("n2o_minutes", sa.Integer(), nullable=True),
        sa.Column("ketamine_mg_per_kg", sa.Float(), nullable=True),
        sa.Column("ketamine_minutes", sa.Integer(), nullable=True),
        sa.Column("esketamine_mg", sa.Integer(), nullable=True),
        sa.Column("planned_start_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("planned_end_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("is_last_in_course", sa.Boolean(), nullable=False),
        sa.Column("discharged_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rems_monitoring_completed", sa.Boolean(), nullable=True),
        sa.Column("observations_ct", sa.LargeBinary(), nullable=True),
        sa.Column("notes_ct", sa.LargeBinary(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "modality IN ('n2o', 'iv_ketamine', 'esketamine')", name="ck_sessions_modality"
        ),
        sa.CheckConstraint(
            "status IN ('planned', 'started', 'completed', 'cancelled')", name="ck_sessions_status"
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
        ),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["treatment_courses.id"],
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["staff.id"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_treatment_sessions_clinic_id"), ["clinic_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_treatment_sessions_course_id"), ["course_id"], unique=False
        )
        batch_op.create_index(
            "ix_treatment_sessions_patient_start", ["patient_id", "planned_start_at"], unique=False
        )

    op.create_table(
        "check_ins",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("protocol_id", sa.String(length=64), nullable=False),
        sa.Column("protocol_version", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("planned_priority", sa.String(length=8), nullable=False),
        sa.Column("planned_instruments", sa.JSON(), nullable=False),
        sa.Column("planned_opens_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("planned_closes_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("nominal_due_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reminder_delays_seconds", sa.JSON(), nullable=False),
        sa.Column("missed_flag_after_seconds", sa.Integer(), nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("instruments", sa.JSON(), nullable=False),
        sa.Column("opens_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closes_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("during_quiet_hours", sa.Boolean(), nullable=False),
        sa.Column("reminders_at", sa.JSON(), nullable=False),
        sa.Column("missed_flag_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("merged_into", sa.String(length=128), nullable=True),
        sa.Column("absorbed", sa.JSON(), nullable=False),
        sa.Column("next_reminder_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=32), nullable=True),
        sa.Column("lease_until", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("devices_notified", sa.Integer(), nullable=False),
        sa.Column("answered_instruments", sa.JSON(), nullable=False),
        sa.Column("answered_response_id", sa.Uuid(), nullable=True),
        sa.Column("sent_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("missed_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", backend.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", backend.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'merged', 'cancelled', 'claimed', 'sent', 'answered',"
            " 'missed', 'failed')",
            name="ck_check_ins_status",
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
        ),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["treatment_courses.id"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_sessions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key", name="uq_check_ins_idempotency_key"),
    )
    with op.batch_alter_table("check_ins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_check_ins_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index("ix_check_ins_closes", ["status", "closes_at"], unique=False)
        batch_op.create_index("ix_check_ins_due", ["status", "due_at"], unique=False)
        batch_op.create_index("ix_check_ins_patient", ["patient_id", "due_at"], unique=False)
        batch_op.create_index("ix_check_ins_reminder", ["status", "next_reminder_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_check_ins_session_id"), ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("check_ins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_check_ins_session_id"))
        batch_op.drop_index("ix_check_ins_reminder")
        batch_op.drop_index("ix_check_ins_patient")
        batch_op.drop_index("ix_check_ins_due")
        batch_op.drop_index("ix_check_ins_closes")
        batch_op.drop_index(batch_op.f("ix_check_ins_clinic_id"))

    op.drop_table("check_ins")
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_treatment_sessions_patient_start")
        batch_op.drop_index(batch_op.f("ix_treatment_sessions_course_id"))
        batch_op.drop_index(batch_op.f("ix_treatment_sessions_clinic_id"))

    op.drop_table("treatment_sessions")
    with op.batch_alter_table("course_baselines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_course_baselines_patient_id"))

    op.drop_table("course_baselines")
    with op.batch_alter_table("treatment_courses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_treatment_courses_patient_id"))
        batch_op.drop_index(batch_op.f("ix_treatment_courses_clinic_id"))

    op.drop_table("treatment_courses")
    op.drop_table("clinic_protocol_overrides")
    op.drop_table("patient_quiet_hours")
