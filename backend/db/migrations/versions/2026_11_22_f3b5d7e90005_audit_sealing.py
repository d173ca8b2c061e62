"""audit sealing: events are inserted unsealed and sealed off the request path

Revision ID: f3b5d7e90005
Revises: 54f6609f0679
Create Date: 2026-11-22 23:30:00.000000

A request now only inserts its audit event; a sealer later fills ``seq``, ``prev_hash`` and
``hash`` (issue 4/5 performance defect: the chain-head lock held to commit serialised a clinic's
requests). So those columns become nullable, a partial index lists the unsealed events, and the
UPDATE trigger admits exactly the sealing of an unsealed row (NULL → value in the three seal
columns, every other column unchanged); DELETE and TRUNCATE stay refused.

Downgrade seals whatever is still unsealed (the old schema has no place for an unsealed event)
with the same pure hash (``backend.audit.chain``), then restores the old constraints and triggers.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "f3b5d7e90005"
down_revision: str | None = "54f6609f0679"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFUSAL = "audit_events is append-only"
_SEALS = ("seq", "prev_hash", "hash")
_FIELDS = (
    "id",
    "chain",
    "at",
    "actor_id",
    "actor_role",
    "action",
    "resource_type",
    "resource_id",
    "clinic_id",
    "purpose",
    "request_id",
    "outcome",
)
_UNSEALED = "seq IS NULL"


def _sealing(old: str, new: str, same: str) -> str:
    """SQL: this UPDATE seals an unsealed row and changes nothing else."""
    return " AND ".join(
        [f"{old}.{c} IS NULL" for c in _SEALS]
        + [f"{new}.{c} IS NOT NULL" for c in _SEALS]
        + [f"{new}.{c} {same} {old}.{c}" for c in _FIELDS]
    )


# PostgreSQL: the old function (audit_events_append_only) keeps refusing DELETE and TRUNCATE; a
# second one lets UPDATE through only when it is a sealing. A superuser can still bypass triggers
# (session_replication_role = replica); the hash chain catches that.
_PG_UPGRADE = [
    "DROP TRIGGER audit_events_no_update_or_delete ON audit_events",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    f"""
    CREATE FUNCTION audit_events_seal_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF {_sealing("OLD", "NEW", "IS NOT DISTINCT FROM")} THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '{_REFUSAL}' USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    "CREATE TRIGGER audit_events_seal_only BEFORE UPDATE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_seal_only()",
]
_PG_DOWNGRADE = [
    "DROP TRIGGER audit_events_seal_only ON audit_events",
    "DROP FUNCTION audit_events_seal_only()",
    "DROP TRIGGER audit_events_no_delete ON audit_events",
    "CREATE TRIGGER audit_events_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
]
# SQLite: `IS` is its NULL-safe equality.
_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS audit_events_no_update",
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
]
_SQLITE_DELETE = (
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    f" BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
)
_SQLITE_UPGRADE = [
    _SQLITE_DELETE,
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events"
    f" WHEN NOT ({_sealing('OLD', 'NEW', 'IS')})"
    f" BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END",
]
_SQLITE_DOWNGRADE = [
    _SQLITE_DELETE,
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events"
    f" BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END",
]


def _set_seal_columns_nullable(nullable: bool) -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=nullable)
        for column in ("prev_hash", "hash"):
            batch_op.alter_column(column, existing_type=sa.String(length=64), nullable=nullable)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        # Batch mode rebuilds the table, which would drop its triggers anyway.
        for statement in _SQLITE_DROP:
            op.execute(statement)
    _set_seal_columns_nullable(True)
    op.create_index(
        "ix_audit_events_unsealed",
        "audit_events",
        ["chain", "at", "id"],
        postgresql_where=sa.text(_UNSEALED),
        sqlite_where=sa.text(_UNSEALED),
    )
    for statement in _PG_UPGRADE if dialect == "postgresql" else _SQLITE_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    _seal_what_is_left()
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for statement in _PG_DOWNGRADE:
            op.execute(statement)
    else:
        for statement in _SQLITE_DROP:
            op.execute(statement)
    op.drop_index("ix_audit_events_unsealed", table_name="audit_events")
    _set_seal_columns_nullable(False)
    if dialect == "sqlite":
        for statement in _SQLITE_DOWNGRADE:
            op.execute(statement)


def _seal_what_is_left() -> None:
    """Seal unsealed events as the sealer would (in (at, id) order after each chain's head)."""
    from backend.audit.chain import GENESIS_HASH, ChainedEvent, event_hash
    from backend.db.types import UTCDateTime

    bind = op.get_bind()
    events = sa.table(
        "audit_events",
        sa.column("id", sa.Uuid()),
        *(sa.column(c, sa.String()) for c in _FIELDS[1:2]),
        sa.column("at", UTCDateTime()),
        *(sa.column(c, sa.String()) for c in _FIELDS[3:8]),
        sa.column("clinic_id", sa.Uuid()),
        *(sa.column(c, sa.String()) for c in _FIELDS[9:]),
        sa.column("seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    heads = sa.table(
        "audit_chain_heads",
        sa.column("chain", sa.String()),
        sa.column("seq", sa.BigInteger()),
        sa.column("hash", sa.String()),
        sa.column("updated_at", UTCDateTime()),
    )
    e = events.c
    pending = bind.execute(
        sa.select(events).where(e.seq.is_(None)).order_by(e.chain, e.at, e.id)
    ).all()
    now = datetime.now(UTC)
    tips: dict[str, tuple[int, str]] = {}
    for row in pending:
        chain = str(row.chain)
        if chain not in tips:
            head = bind.execute(
                sa.select(heads.c.seq, heads.c.hash).where(heads.c.chain == chain)
            ).first()
            if head is None:
                bind.execute(
                    heads.insert().values(chain=chain, seq=0, hash=GENESIS_HASH, updated_at=now)
                )
                tips[chain] = (0, GENESIS_HASH)
            else:
                tips[chain] = (int(head.seq), str(head.hash))
        seq, prev_hash = tips[chain]
        fields = {c: getattr(row, c) for c in _FIELDS}
        digest = event_hash(ChainedEvent(**fields, seq=seq + 1, prev_hash=prev_hash))
        bind.execute(
            events.update()
            .where(e.id == row.id)
            .values(seq=seq + 1, prev_hash=prev_hash, hash=digest)
        )
        tips[chain] = (seq + 1, digest)
    for chain, (seq, digest) in tips.items():
        bind.execute(
            heads.update()
            .where(heads.c.chain == chain)
            .values(seq=seq, hash=digest, updated_at=now)
        )
