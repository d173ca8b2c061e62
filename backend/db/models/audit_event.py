import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime

_UNSEALED = text("seq IS NULL")


class AuditLogEntry(SQLModel, table=True):
    """One read or change of patient data, or a security event: who, what, which resource, why.

    Append-only and hash-chained (``backend/audit``). A request inserts the event without a seal
    (``seq``, ``prev_hash``, ``hash`` NULL), so it never waits for other requests; the sealer then
    gives it its place in its chain: ``seq``, ``prev_hash`` (the hash of the event before it) and
    ``hash``, SHA-256 over the event's fields and ``prev_hash``. An edited, deleted or reordered
    sealed event breaks the chain. On PostgreSQL and SQLite triggers refuse DELETE and every
    UPDATE except that one sealing (all three seal columns NULL → set, nothing else changed).
    There is one chain per clinic, plus ``system`` for events outside any clinic.

    No PHI, ever: identifiers, roles, verbs and purposes only (DESIGN §8).
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("chain", "seq", name="uq_audit_events_chain_seq"),
        Index("ix_audit_events_clinic_id_at", "clinic_id", "at"),
        Index("ix_audit_events_resource", "resource_type", "resource_id"),
        # The sealer's work list: small whatever the size of the log.
        Index(
            "ix_audit_events_unsealed",
            "chain",
            "at",
            "id",
            postgresql_where=_UNSEALED,
            sqlite_where=_UNSEALED,
        ),
    )

    id: uuid.UUID = Field(primary_key=True)
    chain: str = Field(max_length=64)
    seq: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    at: datetime = Field(sa_type=UTCDateTime)
    actor_id: str | None = Field(default=None, max_length=128)
    actor_role: str = Field(max_length=32)
    action: str = Field(max_length=64)
    resource_type: str = Field(max_length=64)
    resource_id: str | None = Field(default=None, max_length=128)
    clinic_id: uuid.UUID | None = Field(default=None)
    purpose: str = Field(max_length=64)
    request_id: str | None = Field(default=None, max_length=128)
    outcome: str = Field(max_length=16)
    prev_hash: str | None = Field(default=None, max_length=64)  # hex SHA-256; NULL until sealed
    hash: str | None = Field(default=None, max_length=64)


class AuditChainHead(SQLModel, table=True):
    """The last sealed event of each audit chain; sealers lock this row to serialise.

    Only sealers touch it (``FOR UPDATE SKIP LOCKED``), never a request. Also a check on the tail:
    deleting the newest sealed events (or their seals) leaves the head pointing past them. (An
    attacker who can rewrite both tables can truncate undetected; anchor heads outside the database
    for that, e.g. in the operator's log shipping.)
    """

    __tablename__ = "audit_chain_heads"

    chain: str = Field(primary_key=True, max_length=64)
    seq: int = Field(sa_column=Column(BigInteger(), nullable=False))
    hash: str = Field(max_length=64)
    updated_at: datetime = Field(sa_type=UTCDateTime)
