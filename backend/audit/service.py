"""Append to and verify the tamper-evident audit log (DESIGN §8, issue 4).

Appending: one chain per clinic (``chain_for``). The appender locks the chain's row in
``audit_chain_heads`` (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite has one writer and our engine
begins every transaction with ``BEGIN IMMEDIATE``), writes the event with the head's hash as
``prev_hash`` and moves the head, all in the caller's transaction. So appends from any number of
app instances form one valid sequence per chain, and an append that rolls back leaves no gap. The
lock is held until the caller commits: requests of one clinic that audit are serialised from their
append to their commit, which is why the chain is per clinic and why callers should append late in
their unit of work.

Verifying walks every chain in ``seq`` order inside one snapshot and recomputes each hash.
"""

import uuid
from datetime import UTC, datetime
from typing import Any, Final, cast

import msgspec
from sqlalchemy import Row, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.chain import GENESIS_HASH, ChainedEvent, chain_for, event_hash
from backend.db.models.audit_event import AuditChainHead, AuditLogEntry

__all__ = [
    "AUDIT_CHAIN_HEADS",
    "AUDIT_EVENTS",
    "OUTCOMES",
    "AuditEvent",
    "AuditVerification",
    "BrokenLink",
    "record_audit",
    "verify_audit_chain",
]

AUDIT_EVENTS: Final = cast(Table, AuditLogEntry.__table__)  # type: ignore[attr-defined]
AUDIT_CHAIN_HEADS: Final = cast(Table, AuditChainHead.__table__)  # type: ignore[attr-defined]
_e = AUDIT_EVENTS.c
_h = AUDIT_CHAIN_HEADS.c

OUTCOMES: Final = frozenset({"success", "denied", "failed"})
_VERIFY_BATCH: Final = 1000


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What happened, by whom, to which resource, why. Identifiers and verbs only: never PHI.

    ``actor_id`` is a staff or patient id (None for an unauthenticated caller), ``actor_role`` one
    of the roles or ``anonymous``/``system``; ``action`` a verb such as ``read`` or
    ``login.failed``; ``purpose`` why the access happened (``treatment``, ``operations``,
    ``research``, ``security``…).
    """

    actor_id: str | None
    actor_role: str
    action: str
    resource_type: str
    resource_id: str | None
    clinic_id: uuid.UUID | None
    purpose: str
    request_id: str | None
    outcome: str = "success"
    at: datetime


class BrokenLink(msgspec.Struct, frozen=True, kw_only=True):
    """Where a chain first fails verification, and how."""

    chain: str
    seq: int
    event_id: str | None
    reason: str


class AuditVerification(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    chains: int
    events: int
    first_broken: BrokenLink | None = None


async def record_audit(session: AsyncSession, event: AuditEvent) -> None:
    """Append ``event`` to its clinic's chain in the caller's transaction (which commits it)."""
    _check(event)
    connection = await session.connection()
    chain = chain_for(event.clinic_id)
    seq, prev_hash = await _lock_head(connection, chain, event.at)
    stored = ChainedEvent(
        id=uuid.uuid4(),
        chain=chain,
        seq=seq + 1,
        at=event.at.astimezone(UTC),
        actor_id=event.actor_id,
        actor_role=event.actor_role,
        action=event.action,
        resource_type=event.resource_type,
        resource_id=event.resource_id,
        clinic_id=event.clinic_id,
        purpose=event.purpose,
        request_id=event.request_id,
        outcome=event.outcome,
        prev_hash=prev_hash,
    )
    digest = event_hash(stored)
    await connection.execute(
        AUDIT_EVENTS.insert().values(
            id=stored.id,
            chain=chain,
            seq=stored.seq,
            at=stored.at,
            actor_id=stored.actor_id,
            actor_role=stored.actor_role,
            action=stored.action,
            resource_type=stored.resource_type,
            resource_id=stored.resource_id,
            clinic_id=stored.clinic_id,
            purpose=stored.purpose,
            request_id=stored.request_id,
            outcome=stored.outcome,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    await connection.execute(
        update(AUDIT_CHAIN_HEADS)
        .where(_h.chain == chain)
        .values(seq=stored.seq, hash=digest, updated_at=stored.at)
    )


def _check(event: AuditEvent) -> None:
    if event.outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {sorted(OUTCOMES)}")
    if event.at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    for name in ("actor_id", "actor_role", "action", "resource_type", "resource_id", "purpose",
                 "request_id"):  # fmt: skip
        value = getattr(event, name)
        limit = int(getattr(_e[name].type, "length"))  # noqa: B009  (String columns)
        if value is not None and len(value) > limit:
            raise ValueError(f"audit field {name} is longer than {limit} characters")
    for name in ("actor_role", "action", "resource_type", "purpose"):
        if not getattr(event, name):
            raise ValueError(f"audit field {name} must not be empty")


async def _lock_head(connection: AsyncConnection, chain: str, at: datetime) -> tuple[int, str]:
    locked = select(_h.seq, _h.hash).where(_h.chain == chain).with_for_update()
    row = (await connection.execute(locked)).first()
    if row is None:
        # First event of this chain. Two instances may race here: ON CONFLICT DO NOTHING lets the
        # loser fall through to the locking read, which then waits for the winner's commit.
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        await connection.execute(
            insert(AUDIT_CHAIN_HEADS)
            .values(chain=chain, seq=0, hash=GENESIS_HASH, updated_at=at)
            .on_conflict_do_nothing(index_elements=["chain"])
        )
        row = (await connection.execute(locked)).one()
    return int(row.seq), str(row.hash)


async def verify_audit_chain(engine: AsyncEngine) -> AuditVerification:
    """Recompute every chain; report the first broken link (edited, missing, moved or extra row).

    Runs in one snapshot (REPEATABLE READ on PostgreSQL; SQLite's write lock), so events appended
    meanwhile cannot make a valid log look broken.
    """
    chains = 0
    events = 0
    async with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execution_options(isolation_level="REPEATABLE READ")
        async with connection.begin():
            heads = {
                str(row.chain): (int(row.seq), str(row.hash))
                for row in (await connection.execute(select(_h.chain, _h.seq, _h.hash))).all()
            }
            event_chains = set(
                (await connection.execute(select(_e.chain).distinct())).scalars().all()
            )
            for chain in sorted(set(heads) | event_chains):
                chains += 1
                checked, broken = await _verify_one(connection, chain, heads.get(chain))
                events += checked
                if broken is not None:
                    return AuditVerification(
                        ok=False, chains=chains, events=events, first_broken=broken
                    )
    return AuditVerification(ok=True, chains=chains, events=events)


async def _verify_one(
    connection: AsyncConnection, chain: str, head: tuple[int, str] | None
) -> tuple[int, BrokenLink | None]:
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    while True:
        rows = (
            await connection.execute(
                select(AUDIT_EVENTS)
                .where(_e.chain == chain, _e.seq >= expected_seq)
                .order_by(_e.seq)
                .limit(_VERIFY_BATCH)
            )
        ).all()
        for row in rows:
            if row.seq != expected_seq:
                return checked, BrokenLink(
                    chain=chain,
                    seq=expected_seq,
                    event_id=None,
                    reason=f"event {expected_seq} is missing (next present is {row.seq})",
                )
            if row.prev_hash != prev_hash:
                return checked, _broken(row, "does not link to the event before it")
            recomputed = event_hash(
                ChainedEvent(
                    id=row.id,
                    chain=row.chain,
                    seq=row.seq,
                    at=row.at,
                    actor_id=row.actor_id,
                    actor_role=row.actor_role,
                    action=row.action,
                    resource_type=row.resource_type,
                    resource_id=row.resource_id,
                    clinic_id=row.clinic_id,
                    purpose=row.purpose,
                    request_id=row.request_id,
                    outcome=row.outcome,
                    prev_hash=row.prev_hash,
                )
            )
            if recomputed != row.hash:
                return checked, _broken(row, "was altered (its hash does not match its content)")
            checked += 1
            expected_seq += 1
            prev_hash = str(row.hash)
        if len(rows) < _VERIFY_BATCH:
            break
    last_seq = expected_seq - 1
    if head is None:
        return checked, BrokenLink(
            chain=chain, seq=last_seq, event_id=None, reason="the chain has no head record"
        )
    head_seq, head_hash = head
    if head_seq != last_seq or head_hash != prev_hash:
        reason = (
            f"the chain head records event {head_seq} but the last event present is {last_seq}"
            if head_seq != last_seq
            else "the chain head does not match the last event"
        )
        return checked, BrokenLink(chain=chain, seq=last_seq, event_id=None, reason=reason)
    return checked, None


def _broken(row: Row[Any], problem: str) -> BrokenLink:
    seq = int(row.seq)
    return BrokenLink(
        chain=str(row.chain), seq=seq, event_id=str(row.id), reason=f"event {seq} {problem}"
    )
