"""Linking responses to check-ins (both databases): the patient's own, open, asked-for check-in;
late when received after the window though authored inside it; answered once."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.domain.check_ins.delivery import CheckInTimers
from backend.domain.check_ins.linking import CheckInExpired, link_response
from backend.domain.responses.schemas import ResponseSubmission
from backend.domain.responses.service import PatientRef, submit_response
from backend.domain.sessions import service
from backend.domain.sessions.schemas import SessionReschedule
from backend.lib.errors import Conflict, InvalidInput, NotFound
from questionnaires.answers import Answer
from questionnaires.registry import get_instrument
from tests.sessions.world import START, World


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await World(engine).setup()


async def _ladder(world: World) -> tuple[uuid.UUID, dict[str, object]]:
    patient = await world.patient()
    await world.record(patient)
    return patient, {r.step: r for r in await world.rows(patient)}


async def _link(world: World, patient: uuid.UUID, check_in: object, instrument: str, **kw: object):
    async with world.sessions() as s, s.begin():
        return await link_response(
            s,
            patient_id=patient,
            check_in_id=check_in.id,  # type: ignore[attr-defined]
            instrument_id=instrument,
            authored_at=kw.get("authored_at", world.now),  # type: ignore[arg-type]
            now=kw.get("now", world.now),  # type: ignore[arg-type]
        )


async def test_a_check_in_is_answered_when_every_instrument_is(world: World) -> None:
    patient, ladder = await _ladder(world)
    day1 = ladder["24h"]
    assert set(day1.instruments) == {"madrs-s", "side-effects"}  # type: ignore[attr-defined]
    world.clock._now = day1.due_at  # type: ignore[attr-defined]
    await CheckInTimers(world.engine, instance="t", clock=world.clock).drain()
    first = await _link(world, patient, day1, "madrs-s")
    assert (first.late, first.completed) == (False, False)
    again = await _link(world, patient, day1, "madrs-s")
    assert again.completed is False
    second = await _link(world, patient, day1, "side-effects")
    assert second.completed is True
    row = next(r for r in await world.rows(patient) if r.id == day1.id)  # type: ignore[attr-defined]
    assert row.status == "answered"
    assert row.answered_at == world.now
    # No reminder after it was answered.
    assert row.next_reminder_at is None


async def test_refusals_are_clear_client_errors(world: World) -> None:
    patient, ladder = await _ladder(world)
    day3 = ladder["day-3"]
    world.clock._now = day3.due_at  # type: ignore[attr-defined]
    other = await world.patient()
    with pytest.raises(NotFound):
        await _link(world, other, day3, "madrs-s")
    with pytest.raises(InvalidInput):
        await _link(world, patient, day3, "phq9")
    with pytest.raises(CheckInExpired):
        await _link(world, patient, day3, "madrs-s", authored_at=day3.closes_at)  # type: ignore[attr-defined]
    merged = next(r for r in ladder.values() if r.status == "merged")  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        await _link(world, patient, merged, merged.planned_instruments[0])  # type: ignore[attr-defined]
    with pytest.raises(NotFound):
        async with world.sessions() as s:
            await link_response(
                s,
                patient_id=patient,
                check_in_id=uuid.uuid4(),
                instrument_id="madrs-s",
                authored_at=world.now,
                now=world.now,
            )


async def test_a_late_arrival_authored_in_the_window_counts_and_is_labelled_late(
    world: World,
) -> None:
    patient, ladder = await _ladder(world)
    day3 = ladder["day-3"]
    world.clock._now = day3.due_at  # type: ignore[attr-defined]
    timers = CheckInTimers(world.engine, instance="t", clock=world.clock)
    await timers.drain()
    world.clock._now = day3.closes_at + timedelta(hours=1)  # type: ignore[attr-defined]
    await timers.drain()
    assert next(r for r in await world.rows(patient) if r.id == day3.id).status == "missed"  # type: ignore[attr-defined]
    authored = day3.closes_at - timedelta(minutes=10)  # type: ignore[attr-defined]
    link = await _link(world, patient, day3, "madrs-s", authored_at=authored)
    assert link.late is True
    assert next(r for r in await world.rows(patient) if r.id == day3.id).status == "answered"  # type: ignore[attr-defined]


async def test_submit_response_links_and_sets_late(world: World) -> None:
    patient, ladder = await _ladder(world)
    day3 = ladder["day-3"]
    world.clock._now = day3.closes_at + timedelta(minutes=30)  # type: ignore[attr-defined]
    instrument = get_instrument("madrs-s")
    submission = ResponseSubmission(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        answers=tuple(Answer(link_id=f"madrs-s-{n}", value=1) for n in range(1, 10)),
        authored=day3.closes_at - timedelta(minutes=1),  # type: ignore[attr-defined]
        check_in_id=day3.id,  # type: ignore[attr-defined]
    )
    ref = PatientRef(patient_id=patient, clinic_id=world.clinic_id)
    async with world.sessions() as s, s.begin():
        result = await submit_response(
            s,
            world.keyring,
            patient=ref,
            submission=submission,
            idempotency_key="k1",
            now=world.now,
        )
    assert result.late is True
    row = next(r for r in await world.rows(patient) if r.id == day3.id)  # type: ignore[attr-defined]
    assert row.status == "answered"
    assert row.answered_response_id == result.response_id
    # Authored after the close: refused, nothing stored.
    world.clock._now = ladder["day-7"].closes_at + timedelta(minutes=1)  # type: ignore[attr-defined]
    late = ResponseSubmission(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        answers=submission.answers,
        authored=world.now,
        check_in_id=ladder["day-7"].id,  # type: ignore[attr-defined]
    )
    with pytest.raises(CheckInExpired):
        async with world.sessions() as s, s.begin():
            await submit_response(
                s, world.keyring, patient=ref, submission=late, idempotency_key="k2", now=world.now
            )


async def test_a_check_in_answered_in_part_before_it_was_sent_is_neither_pushed_nor_moved(
    world: World,
) -> None:
    patient, ladder = await _ladder(world)
    day1 = ladder["24h"]
    world.clock._now = day1.opens_at + timedelta(hours=1)  # type: ignore[attr-defined]
    assert world.now < day1.due_at  # type: ignore[attr-defined]
    link = await _link(world, patient, day1, "madrs-s")
    assert link.completed is False
    row = next(r for r in await world.rows(patient) if r.id == day1.id)  # type: ignore[attr-defined]
    assert (row.status, row.sent_at, row.answered_instruments) == ("sent", world.now, ["madrs-s"])

    # Moving the session moves its unsent check-ins, not the one the patient is answering.
    async with world.sessions() as s, s.begin():
        await service.reschedule_session(
            s,
            patient_id=patient,
            session_id=day1.session_id,  # type: ignore[attr-defined]
            data=SessionReschedule(planned_start=START + timedelta(days=2)),
            now=world.now,
        )
    rows = {r.id: r for r in await world.rows(patient)}
    assert rows[day1.id].due_at == day1.due_at  # type: ignore[attr-defined]
    assert rows[ladder["day-3"].id].due_at != ladder["day-3"].due_at  # type: ignore[attr-defined]

    # At its due time the claim loop sends nothing for it; the reminder asks for the rest.
    world.clock._now = day1.due_at  # type: ignore[attr-defined]
    await CheckInTimers(world.engine, instance="t", clock=world.clock).drain()
    row = next(r for r in await world.rows(patient) if r.id == day1.id)  # type: ignore[attr-defined]
    assert (row.status, row.devices_notified) == ("sent", 0)
    assert row.next_reminder_at is not None
    done = await _link(world, patient, day1, "side-effects")
    assert done.completed is True
