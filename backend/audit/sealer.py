"""The audit sealer: gives committed, unsealed events their place in their clinic's chain.

Every instance runs it on a timer (``backend/app.py``). Per chain, a sealer locks the chain's row
in ``audit_chain_heads`` with ``FOR UPDATE SKIP LOCKED``: only sealers ever lock it, for the few
milliseconds of one batch, and a sealer that finds it taken skips the chain instead of queueing
(another instance is sealing it right now). Under the lock it reads the oldest unsealed events of
the chain (only committed ones are visible), numbers them after the head in ``(at, id)`` order,
computes each hash over the event and the previous hash (``backend.audit.chain``), writes the
seals (the one UPDATE the append-only trigger admits) and moves the head, in one transaction.

An event that commits after a later-timed one was sealed is sealed after it: ``seq`` is the order
of sealing, which is what the chain protects; ``at`` is the time the request stated.

SQLite has one writer and our engine begins every transaction with ``BEGIN IMMEDIATE``, so the
lock clause is not needed there (SQLAlchemy renders none).
"""

import logging
from datetime import datetime
from typing import Final

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.audit.chain import GENESIS_HASH, event_hash
from backend.audit.service import AUDIT_CHAIN_HEADS, AUDIT_EVENTS, chained_event
from backend.db.upsert import dialect_insert
from backend.lib.clock import Clock

__all__ = ["SEAL_BATCH", "AuditSealer", "seal_pending"]

logger = logging.getLogger("interlude.audit.sealer")

SEAL_BATCH: Final = 500
"""Events sealed per transaction: bounds how long one sealer holds a chain."""

_e = AUDIT_EVENTS.c
_h = AUDIT_CHAIN_HEADS.c

_SEAL = (
    update(AUDIT_EVENTS)
    .where(_e.id == bindparam("event_id"), _e.seq.is_(None))
    .values(seq=bindparam("new_seq"), prev_hash=bindparam("new_prev"), hash=bindparam("new_hash"))
)


async def seal_pending(engine: AsyncEngine, clock: Clock, *, batch: int = SEAL_BATCH) -> int:
    """Seal every committed, unsealed event this call can reach; return how many it sealed.

    A chain another sealer holds is skipped: that sealer, or the next tick, seals it.
    """
    async with engine.begin() as connection:
        chains = (
            (await connection.execute(select(_e.chain).where(_e.seq.is_(None)).distinct()))
            .scalars()
            .all()
        )
    sealed = 0
    for chain in sorted(chains):
        while True:
            async with engine.begin() as connection:
                count = await _seal_batch(connection, chain, clock.now(), batch)
            if count is None:
                break  # another sealer holds this chain
            sealed += count
            if count < batch:
                break
    return sealed


async def _seal_batch(
    connection: AsyncConnection, chain: str, now: datetime, batch: int
) -> int | None:
    head = await _lock_head(connection, chain, now)
    if head is None:
        return None
    seq, prev_hash = head
    rows = (
        await connection.execute(
            select(AUDIT_EVENTS)
            .where(_e.chain == chain, _e.seq.is_(None))
            .order_by(_e.at, _e.id)
            .limit(batch)
        )
    ).all()
    if not rows:
        return 0
    seals: list[dict[str, object]] = []
    for row in rows:
        seq += 1
        digest = event_hash(chained_event(row, seq=seq, prev_hash=prev_hash))
        seals.append(
            {"event_id": row.id, "new_seq": seq, "new_prev": prev_hash, "new_hash": digest}
        )
        prev_hash = digest
    await connection.execute(_SEAL, seals)
    await connection.execute(
        update(AUDIT_CHAIN_HEADS)
        .where(_h.chain == chain)
        .values(seq=seq, hash=prev_hash, updated_at=now)
    )
    return len(rows)


async def _lock_head(
    connection: AsyncConnection, chain: str, now: datetime
) -> tuple[int, str] | None:
    """The chain's head, locked for this transaction; None if another sealer holds it."""
    locked = select(_h.seq, _h.hash).where(_h.chain == chain).with_for_update(skip_locked=True)
    row = (await connection.execute(locked)).first()
    if row is None:
        # First seal of this chain (or the head is locked: SKIP LOCKED hides it). Create it if
        # missing; if another sealer is creating it, this waits for that short transaction only.
        insert = dialect_insert(connection)
        await connection.execute(
            insert(AUDIT_CHAIN_HEADS)
            .values(chain=chain, seq=0, hash=GENESIS_HASH, updated_at=now)
            .on_conflict_do_nothing(index_elements=["chain"])
        )
        row = (await connection.execute(locked)).first()
        if row is None:
            return None
    return int(row.seq), str(row.hash)


class AuditSealer:
    """The timer job: seal what is pending; log how much (counts only, never event content)."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def tick(self) -> None:
        sealed = await seal_pending(self._engine, self._clock)
        if sealed:
            logger.debug(
                "sealed audit events",
                extra={"fields": {"sealed": sealed}},
            )
