"""Claiming due rows with a lease (the outbox pattern), for every queue-like table: the outbox,
check-ins, fallback watches and export jobs.

Two statements in the caller's transaction: SELECT the candidates in due order, locking them and
skipping rows another instance holds (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), then UPDATE
exactly those, re-checking that they are still due, to take the lease. One statement
(``UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)``) lets PostgreSQL re-run
the subquery per row and claim far more than ``n``. SQLite has no row locks and compiles the
locking clause away; it runs one writer at a time.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection


async def lockable_ids(
    connection: AsyncConnection, key: Any, due: Any, *, order_by: Any, limit: int
) -> list[Any]:
    """Up to ``limit`` keys of due rows no other transaction holds, in ``order_by`` order,
    locked to the end of the transaction (PostgreSQL)."""
    if limit <= 0:
        return []
    candidates = (
        select(key).where(due).order_by(order_by).limit(limit).with_for_update(skip_locked=True)
    )
    return list((await connection.execute(candidates)).scalars().all())


async def take_lease(
    connection: AsyncConnection,
    table: Table,
    key: Any,
    ids: Sequence[Any],
    due: Any,
    *,
    values: Mapping[str, Any],
    returning: Sequence[Any],
) -> list[Row[Any]]:
    """Set ``values`` (the owner, the lease's end...) on the rows ``ids`` that are still
    ``due``; the rows taken, with the ``returning`` columns."""
    if not ids:
        return []
    statement = update(table).where(key.in_(ids), due).values(**values).returning(*returning)
    return list((await connection.execute(statement)).all())


async def claim_due_rows(
    connection: AsyncConnection,
    table: Table,
    key: Any,
    due: Any,
    *,
    order_by: Any,
    limit: int,
    values: Mapping[str, Any],
    returning: Sequence[Any],
) -> list[Row[Any]]:
    """`lockable_ids`, then `take_lease` on them."""
    ids = await lockable_ids(connection, key, due, order_by=order_by, limit=limit)
    return await take_lease(connection, table, key, ids, due, values=values, returning=returning)
