"""Record and verify the tamper-evident audit log (DESIGN §8, issue 4).

Recording: ``record_audit`` only INSERTs the event, unsealed, in the caller's transaction, so the
event commits with the change it records or not at all, and a request never waits for another
(the old design locked the clinic's chain head from the append to the commit, which serialised a
clinic's requests: ~70 % of PostgreSQL samples waiting on it at 64 connections, issue 5 bench).
``backend.audit.sealer`` later gives committed events their place in their chain.

Verifying walks every chain's sealed events in ``seq`` order inside one snapshot, recomputes each
hash and checks the head; events not sealed yet are "pending" while younger than a grace period,
and a failure after it (the sealer is not running).
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import msgspec
from sqlalchemy import Row, Table, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.chain import GENESIS_HASH, ChainedEvent, chain_for, event_hash
from backend.db.direct import DirectStatement
from backend.db.models.audit_event import AuditChainHead, AuditLogEntry
from backend.lib.ids import uuid7

__all__ = [
    "AUDITED_COLUMNS",
    "AUDIT_CHAIN_HEADS",
    "AUDIT_EVENTS",
    "OUTCOMES",
    "SEAL_GRACE",
    "AuditEvent",
    "AuditVerification",
    "BrokenLink",
    "audit_row",
    "insert_audit_row",
    "record_audit",
    "verify_audit_chain",
]

AUDIT_EVENTS: Final = cast(Table, AuditLogEntry.__table__)  # type: ignore[attr-defined]
AUDIT_CHAIN_HEADS: Final = cast(Table, AuditChainHead.__table__)  # type: ignore[attr-defined]
_e = AUDIT_EVENTS.c
_h = AUDIT_CHAIN_HEADS.c

OUTCOMES: Final = frozenset({"success", "denied", "failed"})
SEAL_GRACE: Final = timedelta(minutes=5)
"""How long an event may stay unsealed before ``verify`` calls it a failure. Every instance seals
about once a second, so only a stopped sealer (or a transaction open for minutes) gets near it."""
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
    """Where the log first fails verification, and how. ``seq`` is None for an unsealed event."""

    chain: str
    seq: int | None
    event_id: str | None
    reason: str


class AuditVerification(msgspec.Struct, frozen=True, kw_only=True):
    """``events`` sealed events verified in ``chains`` chains; ``pending`` unsealed within grace."""

    ok: bool
    chains: int
    events: int
    pending: int = 0
    first_broken: BrokenLink | None = None


async def record_audit(session: AsyncSession, event: AuditEvent) -> None:
    """Insert ``event``, unsealed, in the caller's transaction (which commits it). Takes no lock."""
    await insert_audit_row(await session.connection(), audit_row(event))


def audit_row(event: AuditEvent) -> dict[str, Any]:
    """The row ``event`` is stored as (checked; a new id; its chain), keyed by
    `AUDITED_COLUMNS`: for a caller that stores it with its own statement (a submission's
    response and its audit event are one statement on PostgreSQL)."""
    _check(event)
    return {
        "id": uuid7(),
        "chain": chain_for(event.clinic_id),
        "at": event.at.astimezone(UTC),
        "actor_id": event.actor_id,
        "actor_role": event.actor_role,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "clinic_id": event.clinic_id,
        "purpose": event.purpose,
        "request_id": event.request_id,
        "outcome": event.outcome,
    }


async def insert_audit_row(connection: AsyncConnection, row: dict[str, Any]) -> None:
    """Insert an `audit_row` on the caller's connection, in its transaction."""
    await _INSERT_EVENT.all(connection, row)


# Built once and run on the driver (`db.direct`): every audited request inserts one event.
AUDITED_COLUMNS: Final = (
    "id", "chain", "at", "actor_id", "actor_role", "action", "resource_type", "resource_id",
    "clinic_id", "purpose", "request_id", "outcome",
)  # fmt: skip
_INSERT_EVENT: Final = DirectStatement(
    AUDIT_EVENTS.insert().values({name: bindparam(name) for name in AUDITED_COLUMNS})
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


def chained_event(row: Row[Any], *, seq: int, prev_hash: str) -> ChainedEvent:
    """A stored event row (sealed or not) with the position ``seq`` after ``prev_hash``."""
    return ChainedEvent(
        id=row.id,
        chain=row.chain,
        seq=seq,
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
        prev_hash=prev_hash,
    )


async def verify_audit_chain(
    engine: AsyncEngine, *, now: datetime | None = None, grace: timedelta = SEAL_GRACE
) -> AuditVerification:
    """Check every seal and report the first broken link (edited, missing, moved or extra event,
    removed seal, or an event left unsealed for longer than ``grace`` before ``now``).

    Runs in one snapshot (REPEATABLE READ on PostgreSQL; SQLite's write lock), so events recorded
    or sealed meanwhile cannot make a valid log look broken.
    """
    now = datetime.now(UTC) if now is None else now
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
            sealed_chains = set(
                (await connection.execute(select(_e.chain).where(_e.seq.is_not(None)).distinct()))
                .scalars()
                .all()
            )
            for chain in sorted(set(heads) | sealed_chains):
                chains += 1
                checked, broken = await _verify_one(connection, chain, heads.get(chain))
                events += checked
                if broken is not None:
                    return AuditVerification(
                        ok=False, chains=chains, events=events, first_broken=broken
                    )
            pending, broken = await _check_unsealed(connection, now - grace)
    return AuditVerification(
        ok=broken is None, chains=chains, events=events, pending=pending, first_broken=broken
    )


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
            recomputed = event_hash(chained_event(row, seq=row.seq, prev_hash=row.prev_hash))
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


async def _check_unsealed(
    connection: AsyncConnection, stale_before: datetime
) -> tuple[int, BrokenLink | None]:
    """Count unsealed events; one older than ``stale_before``, or half sealed, is a failure."""
    unsealed = _e.seq.is_(None)
    pending = int((await connection.execute(select(func.count()).where(unsealed))).scalar_one())
    wrong = (
        await connection.execute(
            select(_e.id, _e.chain, _e.at, _e.prev_hash, _e.hash)
            .where(
                unsealed,
                or_(_e.at < stale_before, _e.prev_hash.is_not(None), _e.hash.is_not(None)),
            )
            .order_by(_e.at, _e.id)
            .limit(1)
        )
    ).first()
    if wrong is None:
        return pending, None
    reason = (
        "unsealed event carries part of a seal"
        if wrong.prev_hash is not None or wrong.hash is not None
        else "unsealed event is older than the sealing grace period (is the audit sealer running?)"
    )
    return pending, BrokenLink(
        chain=str(wrong.chain), seq=None, event_id=str(wrong.id), reason=reason
    )


def _broken(row: Row[Any], problem: str) -> BrokenLink:
    seq = int(row.seq)
    return BrokenLink(
        chain=str(row.chain), seq=seq, event_id=str(row.id), reason=f"event {seq} {problem}"
    )
