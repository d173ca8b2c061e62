import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.db.types import UTCDateTime


class AuditLogEntry(SQLModel, table=True):
    """One read or change of patient data, or a security event: who, what, which resource, why.

    Append-only and hash-chained (``backend/audit``): ``hash`` is SHA-256 over this row's fields
    and ``prev_hash``, the hash of the row before it in the same chain, so an edited, deleted or
    reordered row breaks the chain. On PostgreSQL and SQLite a trigger also refuses UPDATE and
    DELETE. There is one chain per clinic, plus ``system`` for events outside any clinic.

    No PHI, ever: identifiers, roles, verbs and purposes only (DESIGN §8).
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("chain", "seq", name="uq_audit_events_chain_seq"),
        Index("ix_audit_events_clinic_id_at", "clinic_id", "at"),
        Index("ix_audit_events_resource", "resource_type", "resource_id"),
    )

    id: uuid.UUID = Field(primary_key=True)
    chain: str = Field(max_length=64)
    seq: int = Field(sa_column=Column(BigInteger(), nullable=False))
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
    prev_hash: str = Field(max_length=64)  # hex SHA-256
    hash: str = Field(max_length=64)


class AuditChainHead(SQLModel, table=True):
    """The last event of each audit chain; appenders lock this row to serialise.

    Also a check on the tail: deleting the newest events leaves the head pointing past them. (An
    attacker who can rewrite both tables can truncate undetected; anchor heads outside the database
    for that, e.g. in the operator's log shipping.)
    """

    __tablename__ = "audit_chain_heads"

    chain: str = Field(primary_key=True, max_length=64)
    seq: int = Field(sa_column=Column(BigInteger(), nullable=False))
    hash: str = Field(max_length=64)
    updated_at: datetime = Field(sa_type=UTCDateTime)
