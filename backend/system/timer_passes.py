"""Cluster-wide timer passes: one instance runs each pass (rows in ``timer_passes``).

Every replica's scheduler fires the same timers. For a pass that works through every patient
(alert evaluation) that is the same work once per replica; `claim_pass` lets the first instance
to fire after the pass is due take it, in one conditional UPDATE, and tells the others to skip.
Core statements only.
"""

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.models import TimerPass
from backend.db.upsert import dialect_insert

_t = TimerPass.__table__  # type: ignore[attr-defined]

EARLY_FRACTION = 0.9
"""A claimed pass is next due after 90 % of its interval, not 100 %: each replica's timer
drifts a little, and a pass due a moment after the claimer's next tick would otherwise wait a
whole extra interval for it (or for another replica)."""


async def claim_pass(
    engine: AsyncEngine, name: str, *, holder: str, now: datetime, interval: timedelta
) -> bool:
    """True when the caller should run the pass ``name`` now (and it is claimed until about
    ``interval`` from now); False when another instance ran it within that time.

    On PostgreSQL a racing claim waits for the row and then finds it no longer due; SQLite
    serialises writers. Either way exactly one caller gets True."""
    due = now + interval * EARLY_FRACTION
    async with engine.begin() as connection:
        claimed = await connection.execute(
            update(_t)
            .where(_t.c.name == name, _t.c.due_at <= now)
            .values(due_at=due, holder=holder[:128], claimed_at=now)
        )
        if claimed.rowcount == 1:
            return True
        # Not due, or the pass's first run anywhere: then the row is made already claimed (a row
        # that exists, not due or just claimed by a racing instance, inserts nothing).
        insert = dialect_insert(connection)
        created = await connection.execute(
            insert(_t)
            .values(name=name, due_at=due, holder=holder[:128], claimed_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return created.rowcount == 1
