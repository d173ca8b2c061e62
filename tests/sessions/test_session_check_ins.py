"""Sessions write their check-in rows in the same transaction; re-plans are idempotent and touch
only what was not sent (both databases)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from backend.db.models.treatment import CheckIn
from backend.domain.check_ins.plans import ISSUED
from backend.domain.sessions import service
from backend.domain.sessions.schemas import SessionReschedule
from backend.lib.errors import InvalidInput
from tests.sessions.world import START, World

CHECK_INS = CheckIn.__table__  # type: ignore[attr-defined]


def _state(rows: list[object]) -> list[tuple[object, ...]]:
    keep = ("idempotency_key", "status", "due_at", "opens_at", "closes_at", "instruments")
    return sorted(tuple(getattr(r, k) for k in keep) for r in rows)


async def test_a_recorded_session_writes_its_ladder(world: World) -> None:
    patient = await world.patient()
    session_id = await world.record(patient)
    rows = await world.rows(patient)
    steps = {r.step for r in rows}
    assert {"baseline", "pre-session", "2h", "24h", "day-3", "day-7"} <= steps
    assert all(r.session_id == session_id for r in rows)
    # Baseline and pre-session overlap and share instruments: one asks for both.
    assert {r.status for r in rows} == {"pending", "merged"}
    assert all((r.status == "merged") == (r.merged_into is not None) for r in rows)
    keys = [r.idempotency_key for r in rows]
    assert len(keys) == len(set(keys))
    assert all(k.startswith(f"{session_id}:") for k in keys)


async def test_a_failed_session_write_leaves_no_check_ins(world: World) -> None:
    patient = await world.patient()
    with pytest.raises(InvalidInput):
        # Two doses: refused after nothing was written, so the transaction holds nothing.
        await world.record(patient, ketamine_mg_per_kg=0.5)
    assert await world.rows(patient) == []


async def test_rescheduling_twice_equals_rescheduling_once(world: World) -> None:
    patient = await world.patient()
    session_id = await world.record(patient)
    later = START + timedelta(days=3, hours=2)

    async def move() -> None:
        async with world.sessions() as s, s.begin():
            await service.reschedule_session(
                s,
                patient_id=patient,
                session_id=session_id,
                data=SessionReschedule(planned_start=later),
                now=world.now,
            )

    await move()
    once = _state(await world.rows(patient))
    await move()
    assert _state(await world.rows(patient)) == once
    two_h = next(r for r in await world.rows(patient) if r.step == "2h")
    assert two_h.nominal_due_at == later + timedelta(hours=3)  # 1 h session, +2 h after its end


async def test_cancel_removes_only_unsent_check_ins(world: World) -> None:
    patient = await world.patient()
    session_id = await world.record(patient)
    rows = await world.rows(patient)
    baseline = next(r for r in rows if r.step == "baseline")
    async with world.engine.begin() as connection:
        await connection.execute(
            update(CHECK_INS).where(CHECK_INS.c.id == baseline.id).values(status="sent")
        )
    async with world.sessions() as s, s.begin():
        await service.cancel_session(s, patient_id=patient, session_id=session_id, now=world.now)
    after = {r.idempotency_key: r.status for r in await world.rows(patient)}
    assert after.pop(baseline.idempotency_key) == "sent"
    assert set(after.values()) == {"cancelled"}
    # Cancelling again changes nothing.
    async with world.sessions() as s, s.begin():
        await service.cancel_session(s, patient_id=patient, session_id=session_id, now=world.now)
    assert {r.idempotency_key: r.status for r in await world.rows(patient)} == {
        baseline.idempotency_key: "sent",
        **after,
    }


async def test_a_second_session_replans_the_first_and_never_reissues(world: World) -> None:
    patient = await world.patient()
    first = await world.record(patient)
    rows = await world.rows(patient)
    # The first session's +2 h and +24 h went out.
    issued = {r.idempotency_key for r in rows if r.step in ("2h", "24h")}
    async with world.engine.begin() as connection:
        await connection.execute(
            update(CHECK_INS)
            .where(CHECK_INS.c.idempotency_key.in_(issued))
            .values(status="answered")
        )
    second = await world.record(patient, START + timedelta(days=8))
    rows = await world.rows(patient)
    by_key = {r.idempotency_key: r for r in rows}
    assert all(by_key[k].status == "answered" for k in issued)
    # Day 14 of the first session is superseded by the second session's pre-session check-in.
    assert by_key[f"{first}:day-14"].status == "cancelled"
    assert f"{second}:pre-session" in by_key
    assert f"{second}:baseline" not in by_key  # the baseline belongs to the first session only
    assert all(r.status not in ISSUED or r.idempotency_key in issued for r in rows)


async def test_completing_a_session_retimes_its_ladder_from_the_actual_end(world: World) -> None:
    from backend.domain.sessions.schemas import Observations, SessionCompletion

    patient = await world.patient()
    session_id = await world.record(patient)
    world.clock.advance(days=3)
    started, ended = START + timedelta(minutes=30), START + timedelta(minutes=100)
    async with world.sessions() as s, s.begin():
        await service.complete_session(
            s,
            world.keyring,
            patient_id=patient,
            session_id=session_id,
            data=SessionCompletion(
                started_at=started,
                ended_at=ended,
                observations=Observations(cadss6=3, sedation_moaas=5),
                notes="tolerated well",
            ),
            now=world.now,
        )
    two_h = next(r for r in await world.rows(patient) if r.step == "2h")
    assert two_h.nominal_due_at == ended + timedelta(hours=2)
    async with world.sessions() as s:
        views = await service.session_views(
            s, world.keyring, await service.list_sessions(s, patient)
        )
    assert views[0].status == "completed"
    assert views[0].n2o_minutes == 70
    assert views[0].observations is not None
    assert views[0].observations.cadss6 == 3
    assert views[0].notes == "tolerated well"


async def test_unknown_patient_is_not_found(world: World) -> None:
    from backend.lib.errors import NotFound

    with pytest.raises(NotFound):
        await world.record(uuid.uuid4())


async def test_a_session_years_away_is_refused_before_anything_is_planned(world: World) -> None:
    patient = await world.patient()
    for start in (datetime(9999, 12, 31, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC)):
        with pytest.raises(InvalidInput, match="within two years"):
            await world.record(patient, start)
    assert await world.rows(patient) == []
