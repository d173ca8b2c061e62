"""The audit log on SQLite and PostgreSQL: sealed events chain, tampering is detected."""

import asyncio
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.chain import chain_for
from backend.audit.sealer import seal_pending
from backend.audit.service import (
    AUDIT_CHAIN_HEADS,
    AUDIT_EVENTS,
    AuditEvent,
    AuditVerification,
    record_audit,
    verify_audit_chain,
)
from tests.support import ManualClock

Sessions = async_sessionmaker[AsyncSession]
CLINIC = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)
"""When the tests verify: every event is within the sealing grace."""


def _event(n: int, *, clinic: uuid.UUID | None = CLINIC, **changes: Any) -> AuditEvent:
    fields: dict[str, object] = {
        "actor_id": f"staff-{n % 3}",
        "actor_role": "clinician",
        "action": "read",
        "resource_type": "patient",
        "resource_id": f"patient-{n}",
        "clinic_id": clinic,
        "purpose": "treatment",
        "request_id": f"req-{n}",
        "at": T0 + timedelta(seconds=n, microseconds=n),
    }
    fields.update(changes)
    return AuditEvent(**fields)  # type: ignore[arg-type]


async def _record(sessions: Sessions, events: Iterable[AuditEvent]) -> None:
    for event in events:
        async with sessions() as session:
            await record_audit(session, event)
            await session.commit()


async def _seal(engine: AsyncEngine) -> int:
    return await seal_pending(engine, ManualClock(NOW))


async def _verify(engine: AsyncEngine) -> AuditVerification:
    return await verify_audit_chain(engine, now=NOW)


async def _append(engine: AsyncEngine, sessions: Sessions, events: Iterable[AuditEvent]) -> None:
    """Record the events one request at a time, then let the sealer chain them."""
    await _record(sessions, events)
    await _seal(engine)


async def _tamper(engine: AsyncEngine, *statements: str) -> None:
    """Change audit rows as someone with database-owner rights would, around the trigger."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Superusers may skip ordinary triggers for replication; an attacker with those rights
            # can too, which is why the hash chain exists.
            await connection.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            await connection.execute(text("DROP TRIGGER audit_events_no_update"))
            await connection.execute(text("DROP TRIGGER audit_events_no_delete"))
        for statement in statements:
            await connection.execute(text(statement))


async def test_an_untouched_log_verifies(engine: AsyncEngine, sessions: Sessions) -> None:
    assert (await _verify(engine)).ok  # empty is intact
    other = uuid.uuid4()
    await _append(engine, sessions, [_event(n) for n in range(1, 6)])
    await _append(engine, sessions, [_event(n, clinic=other) for n in range(1, 4)])
    await _append(
        engine,
        sessions,
        [_event(9, clinic=None, actor_id=None, actor_role="anonymous", outcome="denied")],
    )
    result = await _verify(engine)
    assert result.ok, result.first_broken
    assert (result.chains, result.events) == (3, 9)

    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(AUDIT_EVENTS.c.seq, AUDIT_EVENTS.c.resource_id)
                .where(AUDIT_EVENTS.c.chain == chain_for(CLINIC))
                .order_by(AUDIT_EVENTS.c.seq)
            )
        ).all()
    assert [(row.seq, row.resource_id) for row in rows] == [
        (n, f"patient-{n}") for n in range(1, 6)
    ]


async def test_the_database_refuses_updates_and_deletes(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    await _append(engine, sessions, [_event(1)])
    for statement in ("UPDATE audit_events SET action = 'write'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(text(statement))
    assert (await _verify(engine)).ok


async def test_a_deleted_event_is_detected(engine: AsyncEngine, sessions: Sessions) -> None:
    await _append(engine, sessions, [_event(n) for n in range(1, 6)])
    await _tamper(engine, "DELETE FROM audit_events WHERE seq = 3")
    result = await _verify(engine)
    assert not result.ok
    assert result.first_broken is not None
    assert result.first_broken.seq == 3
    assert "missing" in result.first_broken.reason


async def test_a_deleted_newest_event_is_detected_by_the_head(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    await _append(engine, sessions, [_event(n) for n in range(1, 4)])
    await _tamper(engine, "DELETE FROM audit_events WHERE seq = 3")
    result = await _verify(engine)
    assert not result.ok
    assert result.first_broken is not None
    assert "head records event 3" in result.first_broken.reason


async def test_an_edited_event_is_detected(engine: AsyncEngine, sessions: Sessions) -> None:
    await _append(engine, sessions, [_event(n) for n in range(1, 6)])
    await _tamper(engine, "UPDATE audit_events SET actor_id = 'someone-else' WHERE seq = 2")
    result = await _verify(engine)
    assert not result.ok
    assert result.first_broken is not None
    assert (result.first_broken.seq, result.first_broken.chain) == (2, chain_for(CLINIC))
    assert "altered" in result.first_broken.reason


async def test_an_edit_that_recomputes_its_own_hash_breaks_the_next_link(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    await _append(engine, sessions, [_event(n) for n in range(1, 4)])
    # Even a forger who recomputes row 2's hash cannot fix row 3's prev_hash (which is covered by
    # row 3's hash) without rewriting every later row and the head.
    await _tamper(engine, f"UPDATE audit_events SET hash = '{'f' * 64}' WHERE seq = 2")
    result = await _verify(engine)
    assert result.first_broken is not None
    assert result.first_broken.seq == 2


async def test_two_swapped_events_are_detected(engine: AsyncEngine, sessions: Sessions) -> None:
    await _append(engine, sessions, [_event(n) for n in range(1, 6)])
    await _tamper(
        engine,
        "UPDATE audit_events SET seq = -1 WHERE seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = -1",
    )
    result = await _verify(engine)
    assert not result.ok
    assert result.first_broken is not None
    assert result.first_broken.seq == 2


async def test_a_forged_event_past_the_head_is_detected(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    await _append(engine, sessions, [_event(n) for n in range(1, 3)])
    async with engine.connect() as connection:
        row = (await connection.execute(select(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq == 2))).one()
    forged = {**row._mapping, "id": uuid.uuid4(), "seq": 3, "prev_hash": row.hash}
    async with engine.begin() as connection:
        await connection.execute(AUDIT_EVENTS.insert().values(**forged))
    result = await _verify(engine)
    assert not result.ok
    assert result.first_broken is not None
    assert result.first_broken.seq == 3


async def test_a_rolled_back_append_leaves_no_gap(engine: AsyncEngine, sessions: Sessions) -> None:
    await _append(engine, sessions, [_event(1)])
    async with sessions() as session:
        await record_audit(session, _event(2))
        await session.rollback()
    await _append(engine, sessions, [_event(3)])
    assert (await _verify(engine)).pending == 0
    result = await _verify(engine)
    assert result.ok, result.first_broken
    assert result.events == 2


async def test_concurrent_appends_form_one_valid_chain_per_clinic(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    clinics = [CLINIC, uuid.uuid4(), None]

    async def append(n: int) -> None:
        async with sessions() as session:
            await record_audit(session, _event(n, clinic=clinics[n % 3]))
            # Hold the transaction across a yield so appenders genuinely overlap.
            await asyncio.sleep(0)
            await session.commit()

    await asyncio.gather(*(append(n) for n in range(60)))
    assert await _seal(engine) == 60
    result = await _verify(engine)
    assert result.ok, result.first_broken
    assert (result.chains, result.events) == (3, 60)
    async with engine.connect() as connection:
        heads = (await connection.execute(select(AUDIT_CHAIN_HEADS.c.seq))).scalars().all()
    assert sorted(heads) == [20, 20, 20]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"action": ""}, "action"),
        ({"resource_id": "x" * 129}, "resource_id"),
    ],
)
async def test_malformed_events_are_refused(
    sessions: Sessions, changes: dict[str, Any], message: str
) -> None:
    async with sessions() as session:
        with pytest.raises(ValueError, match=message):
            await record_audit(session, _event(1, **changes))
