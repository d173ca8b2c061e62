"""Claiming export jobs, on both databases: a claim takes exactly one job, the oldest due, even
under the PostgreSQL plan that made the single-statement claim take many."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db.engine import create_engine
from backend.domain.exports import repository
from tests.conftest import SettingsFactory

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)
QUEUED = 200


async def _seed(engine: AsyncEngine, count: int) -> list[uuid.UUID]:
    """Queued jobs one second apart, oldest first (rows only: claiming is what is tested)."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with engine.begin() as connection:
        for n, job_id in enumerate(ids):
            await repository.insert_job(
                connection,
                repository.NewJob(
                    id=job_id,
                    requester_id=None,
                    requester_role="researcher",
                    requester_clinic_id=None,
                    study_id=None,
                    clinic_ids="[]",
                    profile="{}",
                    formats="{}",
                    archive="zip",
                    k_required=5,
                    pseudonym_key_ct=None,
                    created_at=NOW - timedelta(hours=1) + timedelta(seconds=n),
                ),
            )
    return ids


async def _plan_as_postgres_may(connection: AsyncConnection) -> None:
    """The plan that over-claims (as in tests/check_ins/test_claim_concurrency.py): a nested
    loop semi join re-scanning the un-materialised IN subquery, each rescan locking the next
    job. PostgreSQL 15 picks it for the old single statement only when an index hands it the
    jobs in creation order without a sort (otherwise every rescan would re-sort); none does
    today, but one is an obvious index to add, so it is added here and the plan forced: the old
    statement then claimed all 200 queued jobs for one runner."""
    if connection.dialect.name != "postgresql":
        return
    await connection.execute(
        text("CREATE INDEX IF NOT EXISTS ix_test_export_jobs_created ON export_jobs (created_at)")
    )
    for setting in (
        "enable_hashjoin",
        "enable_mergejoin",
        "enable_material",
        "enable_sort",
        "enable_hashagg",
    ):
        await connection.execute(text(f"SET LOCAL {setting} = off"))


async def _running(engine: AsyncEngine) -> dict[str, int]:
    jobs = repository.JOBS
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(jobs.c.claimed_by, func.count())
            .where(jobs.c.state == "running")
            .group_by(jobs.c.claimed_by)
        )
    return {str(owner): int(count) for owner, count in rows.all()}


async def test_each_claim_takes_exactly_the_oldest_due_job(engine: AsyncEngine) -> None:
    ids = await _seed(engine, QUEUED)
    for n, instance in enumerate(("a", "b", "a")):
        async with engine.begin() as connection:
            await _plan_as_postgres_may(connection)
            job = await repository.claim_next(connection, instance=instance, now=NOW, lease=LEASE)
        assert job is not None
        assert (job.id, job.claimed_by, job.state, job.attempts) == (ids[n], instance, "running", 1)
    assert await _running(engine) == {"a": 2, "b": 1}


async def test_a_job_whose_lease_ran_out_is_claimed_again_before_newer_ones(
    engine: AsyncEngine,
) -> None:
    ids = await _seed(engine, 3)
    async with engine.begin() as connection:
        dead = await repository.claim_next(connection, instance="dead", now=NOW, lease=LEASE)
    assert dead is not None
    async with engine.begin() as connection:
        await _plan_as_postgres_may(connection)
        # Still leased: the next queued job, not the dead instance's.
        early = await repository.claim_next(connection, instance="a", now=NOW, lease=LEASE)
        late = await repository.claim_next(
            connection, instance="b", now=NOW + LEASE * 2, lease=LEASE
        )
    assert early is not None
    assert late is not None
    assert (early.id, late.id) == (ids[1], ids[0])
    assert (late.claimed_by, late.attempts) == ("b", 2)
    assert await _running(engine) == {"a": 1, "b": 1}


@pytest.mark.postgres
async def test_a_job_locked_by_another_claim_is_skipped(
    postgres_database_url: str, make_settings: SettingsFactory
) -> None:
    engine = create_engine(make_settings(postgres_database_url))
    try:
        ids = await _seed(engine, 2)
        async with engine.connect() as first, engine.connect() as second:
            await first.begin()
            await second.begin()
            held = await repository.claim_next(first, instance="a", now=NOW, lease=LEASE)
            # "a" has not committed yet: its row is locked, and "b" takes the next one at once.
            other = await repository.claim_next(second, instance="b", now=NOW, lease=LEASE)
            await first.commit()
            await second.commit()
        assert held is not None
        assert other is not None
        assert (held.id, other.id) == (ids[0], ids[1])
    finally:
        await engine.dispose()
