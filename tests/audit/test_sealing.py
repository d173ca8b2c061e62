"""Recording takes no lock; the sealer chains committed events, on one instance or several."""

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit.chain import chain_for
from backend.audit.sealer import seal_pending
from backend.audit.service import (
    AUDIT_CHAIN_HEADS,
    AUDIT_EVENTS,
    SEAL_GRACE,
    record_audit,
    verify_audit_chain,
)
from backend.config import Settings
from backend.db import migrate
from backend.db.engine import create_engine, create_sessionmaker
from tests.audit.test_audit_log import (
    CLINIC,
    NOW,
    T0,
    Sessions,
    _append,
    _event,
    _record,
    _seal,
    _tamper,
    _verify,
)
from tests.conftest import SettingsFactory
from tests.support import ManualClock

_e = AUDIT_EVENTS.c

SEALING_REVISION = "f3b5d7e90005"


def _before_sealing() -> str:
    """The sealing migration's parent: the schema where a request sealed its own event."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config()).get_revision(SEALING_REVISION)
    assert script is not None
    assert isinstance(script.down_revision, str)
    return script.down_revision


async def _seals(engine: AsyncEngine, chain: str) -> list[tuple[int | None, str | None]]:
    """(seq, resource_id) of a chain's events in sealing order, unsealed ones last."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(_e.seq, _e.resource_id, _e.hash)
                .where(_e.chain == chain)
                .order_by(_e.seq.is_(None), _e.seq, _e.at)
            )
        ).all()
    return [(row.seq, row.resource_id) for row in rows]


async def test_recording_inserts_an_unsealed_event_that_verify_reports_as_pending(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    await _record(sessions, [_event(1), _event(2)])
    assert await _seals(engine, chain_for(CLINIC)) == [(None, "patient-1"), (None, "patient-2")]
    async with engine.connect() as connection:
        hashes = (await connection.execute(select(_e.prev_hash, _e.hash))).all()
        heads = (await connection.execute(select(AUDIT_CHAIN_HEADS))).all()
    assert [tuple(row) for row in hashes] == [(None, None), (None, None)]
    assert heads == []  # a request never touches the chain head

    pending = await _verify(engine)
    assert (pending.ok, pending.chains, pending.events, pending.pending) == (True, 0, 0, 2)

    stale = await verify_audit_chain(engine, now=T0 + SEAL_GRACE + timedelta(seconds=2))
    assert not stale.ok
    assert stale.first_broken is not None
    assert stale.first_broken.seq is None
    assert "is the audit sealer running?" in stale.first_broken.reason
    # Only the event past the grace is a failure; the younger one is the one still pending.
    just_one = await verify_audit_chain(engine, now=T0 + SEAL_GRACE + timedelta(seconds=1.5))
    assert just_one.first_broken is not None
    async with engine.connect() as connection:
        first = (await connection.execute(select(_e.id).where(_e.resource_id == "patient-1"))).one()
    assert just_one.first_broken.event_id == str(first.id)

    assert await _seal(engine) == 2
    sealed = await verify_audit_chain(engine, now=T0 + timedelta(days=30))
    assert (sealed.ok, sealed.chains, sealed.events, sealed.pending) == (True, 1, 2, 0)
    assert await _seal(engine) == 0  # nothing left


async def test_the_sealer_numbers_each_batch_by_time_and_late_commits_come_after(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    # Recorded out of time order within one pending batch: sealed in (at, id) order.
    await _record(sessions, [_event(3), _event(1), _event(2)])
    assert await _seal(engine) == 3
    # A later commit stating an earlier time is sealed after what is already sealed.
    await _record(sessions, [_event(5), _event(0)])
    assert await _seal(engine) == 2
    assert await _seals(engine, chain_for(CLINIC)) == [
        (1, "patient-1"),
        (2, "patient-2"),
        (3, "patient-3"),
        (4, "patient-0"),
        (5, "patient-5"),
    ]
    result = await _verify(engine)
    assert (result.ok, result.events, result.pending) == (True, 5, 0), result.first_broken


async def test_small_batches_continue_the_chain(engine: AsyncEngine, sessions: Sessions) -> None:
    other = uuid.uuid4()
    await _record(sessions, [_event(n, clinic=CLINIC if n % 2 else other) for n in range(1, 12)])
    assert await seal_pending(engine, ManualClock(NOW), batch=2) == 11
    result = await _verify(engine)
    assert (result.ok, result.chains, result.events) == (True, 2, 11), result.first_broken
    assert [seq for seq, _ in await _seals(engine, chain_for(CLINIC))] == [1, 2, 3, 4, 5, 6]


async def test_the_trigger_admits_only_the_sealing_of_an_unsealed_event(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    await _record(sessions, [_event(1)])
    refused = [
        "UPDATE audit_events SET action = 'write'",  # an unsealed event's content
        "UPDATE audit_events SET seq = 1, prev_hash = 'a', hash = 'b', purpose = 'x'",
        "UPDATE audit_events SET seq = 1, hash = 'b'",  # half a seal
        "DELETE FROM audit_events",
    ]
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(text(statement))
    assert await _seal(engine) == 1
    for statement in (
        "UPDATE audit_events SET seq = 2",  # re-sealing a sealed event
        "UPDATE audit_events SET seq = NULL, prev_hash = NULL, hash = NULL",  # unsealing it
        "DELETE FROM audit_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(text(statement))
    assert (await _verify(engine)).ok


@pytest.mark.parametrize(
    ("where", "reason"),
    [("seq = 2", "event 2 is missing"), ("seq = 3", "head records event 3")],
)
async def test_a_removed_seal_is_detected(
    engine: AsyncEngine, sessions: Sessions, where: str, reason: str
) -> None:
    await _append(engine, sessions, [_event(n) for n in range(1, 4)])
    await _tamper(
        engine, f"UPDATE audit_events SET seq = NULL, prev_hash = NULL, hash = NULL WHERE {where}"
    )
    result = await _verify(engine)
    assert not result.ok
    assert result.first_broken is not None
    assert reason in result.first_broken.reason


async def test_a_half_removed_seal_is_detected(engine: AsyncEngine, sessions: Sessions) -> None:
    await _append(engine, sessions, [_event(1)])
    await _tamper(engine, "UPDATE audit_events SET seq = NULL")
    result = await _verify(engine)
    assert not result.ok
    assert result.first_broken is not None
    # The head still records event 1, which is gone from the chain.
    assert "head records event 1" in result.first_broken.reason


async def test_a_sealer_on_each_of_two_instances_builds_one_chain(
    engine: AsyncEngine, sessions: Sessions, database_url: str, make_settings: SettingsFactory
) -> None:
    second = create_engine(make_settings(database_url))
    try:
        clinics = [CLINIC, uuid.uuid4(), None]
        stop = asyncio.Event()

        async def sealer(on: AsyncEngine) -> int:
            sealed = 0
            while not stop.is_set():
                sealed += await seal_pending(on, ManualClock(NOW), batch=3)
                await asyncio.sleep(0)
            return sealed

        async def requests() -> None:
            for n in range(90):
                async with sessions() as session:
                    await record_audit(session, _event(n, clinic=clinics[n % 3]))
                    await session.commit()
            stop.set()

        sealers = [asyncio.create_task(sealer(on)) for on in (engine, second)]
        await asyncio.wait_for(requests(), timeout=120)
        sealed = sum(await asyncio.gather(*sealers))
        sealed += await seal_pending(second, ManualClock(NOW))
        assert sealed == 90  # every event sealed exactly once
        result = await _verify(engine)
        assert result.ok, result.first_broken
        assert (result.chains, result.events, result.pending) == (3, 90, 0)
        for clinic in clinics:
            assert [seq for seq, _ in await _seals(engine, chain_for(clinic))] == list(range(1, 31))
    finally:
        await second.dispose()


@pytest.mark.postgres
async def test_requests_of_one_clinic_do_not_wait_for_each_other(
    postgres_database_url: str, make_settings: SettingsFactory
) -> None:
    """With the old design (chain head locked from append to commit) the recorders below would
    queue behind the open transaction and this test would time out; now they all commit."""
    engine = create_engine(make_settings(postgres_database_url, db_pool_size="20"))
    sessions = create_sessionmaker(engine)
    try:
        async with sessions() as open_request:
            await record_audit(open_request, _event(0))  # recorded, not committed yet

            async def request(n: int) -> None:
                async with sessions() as session:
                    await record_audit(session, _event(n))
                    await session.commit()

            # A timeout only as a deadlock detector: nothing here may wait on a lock.
            await asyncio.wait_for(asyncio.gather(*(request(n) for n in range(1, 17))), timeout=60)
            # The sealer does not wait on the open transaction either: it seals what committed.
            assert await asyncio.wait_for(seal_pending(engine, ManualClock(NOW)), 60) == 16
            await open_request.commit()
        assert await seal_pending(engine, ManualClock(NOW)) == 1
        assert (await _seals(engine, chain_for(CLINIC)))[-1] == (17, "patient-0")
        result = await _verify(engine)
        assert (result.ok, result.events, result.pending) == (True, 17, 0), result.first_broken
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_sealer_skips_a_chain_another_sealer_holds(
    postgres_database_url: str, make_settings: SettingsFactory
) -> None:
    engine = create_engine(make_settings(postgres_database_url))
    sessions = create_sessionmaker(engine)
    try:
        await _append(engine, sessions, [_event(1)])
        await _record(sessions, [_event(2)])
        async with engine.begin() as holder:
            # Another instance in the middle of sealing this chain.
            await holder.execute(select(AUDIT_CHAIN_HEADS).with_for_update())
            assert await asyncio.wait_for(seal_pending(engine, ManualClock(NOW)), 60) == 0
        assert await seal_pending(engine, ManualClock(NOW)) == 1
        assert (await _verify(engine)).events == 2
    finally:
        await engine.dispose()


async def test_downgrade_seals_what_is_left_and_upgrade_keeps_the_chain(
    engine: AsyncEngine, sessions: Sessions, settings: Settings
) -> None:
    await _append(engine, sessions, [_event(1), _event(2)])
    await _record(sessions, [_event(3), _event(4, clinic=None, actor_role="system")])
    await engine.dispose()  # SQLite: let the migration have the database
    await migrate.downgrade_async(settings, _before_sealing())
    after_downgrade = await _verify(engine)
    assert (after_downgrade.ok, after_downgrade.events, after_downgrade.pending) == (True, 4, 0)
    # The old schema is back: an unsealed event has no place in it.
    with pytest.raises(DBAPIError):
        await _record(sessions, [_event(5)])
    await engine.dispose()
    await migrate.upgrade_async(settings)
    await _record(sessions, [_event(6)])
    assert await _seal(engine) == 1
    result = await _verify(engine)
    assert (result.ok, result.chains, result.events) == (True, 2, 5), result.first_broken
