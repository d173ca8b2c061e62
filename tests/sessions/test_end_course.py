"""Ending a course (both databases): later planned sessions are cancelled with their unsent
check-ins, the follow-up after the last session is planned from the last one left, and check-ins
whose window had closed before they could be planned are never planned (so never "missed")."""

import uuid
from datetime import timedelta

import pytest

from backend.domain.sessions import service
from backend.domain.sessions.schemas import SessionCompletion, SessionInput, SessionReschedule
from backend.lib.errors import Conflict, NotFound
from tests.sessions.world import START, World


async def _course_of(world: World, patient: uuid.UUID, session_id: uuid.UUID) -> uuid.UUID:
    async with world.sessions() as s:
        return (await service.get_session(s, patient, session_id)).course_id


async def _complete(world: World, patient: uuid.UUID, session_id: uuid.UUID) -> None:
    async with world.sessions() as s, s.begin():
        await service.complete_session(
            s,
            world.keyring,
            patient_id=patient,
            session_id=session_id,
            data=SessionCompletion(started_at=START, ended_at=START + timedelta(hours=1)),
            now=world.now,
        )


async def _end(world: World, patient: uuid.UUID, course_id: uuid.UUID) -> service.EndedCourse:
    async with world.sessions() as s, s.begin():
        return await service.end_course(s, patient, course_id, now=world.now)


async def test_ending_a_course_cancels_later_sessions_and_plans_the_follow_up(
    world: World,
) -> None:
    patient = await world.patient()
    held = await world.record(patient)
    later = await world.record(patient, START + timedelta(days=10))
    course_id = await _course_of(world, patient, held)
    world.clock.advance(days=3)
    await _complete(world, patient, held)
    before = {r.idempotency_key: r for r in await world.rows(patient)}
    assert not any(r.step.startswith("mnsi-after-course") for r in before.values())

    ended = await _end(world, patient, course_id)
    assert ended.course.status == "ended"
    assert ended.course.ended_at == world.now
    assert ended.last_session_id == held
    assert ended.cancelled_session_ids == (later,)

    rows = await world.rows(patient)
    later_rows = [r for r in rows if r.session_id == later]
    assert later_rows
    assert {r.status for r in later_rows} == {"cancelled"}
    follow_up = [r for r in rows if r.step.startswith("mnsi-after-course")]
    assert follow_up
    assert all(r.session_id == held and r.status == "pending" for r in follow_up)

    again = await _end(world, patient, course_id)
    assert again.cancelled_session_ids == ()
    assert again.last_session_id == held
    assert await world.rows(patient) == rows

    # The ended course takes no new sessions and moves none; a new session starts a new course.
    async with world.sessions() as s, s.begin():
        with pytest.raises(Conflict):
            await service.record_session(
                s,
                world.keyring,
                patient_id=patient,
                data=SessionInput(
                    modality="n2o",
                    planned_start=START + timedelta(days=20),
                    minutes=60,
                    n2o_concentration_percent=50,
                    course_id=course_id,
                ),
                staff_id=world.staff_id,
                now=world.now,
            )
    fresh = await world.record(patient, START + timedelta(days=20))
    assert await _course_of(world, patient, fresh) != course_id


async def test_a_course_ended_long_after_its_last_session_plans_only_open_follow_up(
    world: World,
) -> None:
    patient = await world.patient()
    async with world.sessions() as s, s.begin():
        row = await service.record_session(
            s,
            world.keyring,
            patient_id=patient,
            data=SessionInput(
                modality="iv_ketamine",
                planned_start=START,
                minutes=40,
                ketamine_mg_per_kg=0.5,
            ),
            staff_id=world.staff_id,
            now=world.now,
        )
        held, course_id = row.id, row.course_id
    world.clock.advance(days=12)
    await _complete(world, patient, held)
    await _end(world, patient, course_id)

    rows = await world.rows(patient)
    steps = {r.step for r in rows if r.step.startswith("follow-up")}
    # Days 1, 3 and 7 closed before the course was ended: never planned, never "missed".
    assert not steps & {"follow-up-day-1", "follow-up-day-3", "follow-up-day-7"}
    assert {"follow-up-day-14", "follow-up-day-21", "follow-up-day-28"} <= steps
    assert all(r.planned_closes_at > world.now for r in rows if r.step in steps)


async def test_a_session_entered_after_it_was_held_plans_no_closed_check_ins(
    world: World,
) -> None:
    patient = await world.patient()
    world.clock.advance(days=4)  # START was two days ago
    session_id = await world.record(patient)
    steps = {r.step for r in await world.rows(patient)}
    assert not steps & {"baseline", "pre-session", "2h", "24h"}
    assert {"day-7", "day-14"} <= steps
    assert session_id


async def test_ending_an_unknown_or_another_patients_course_is_not_found(world: World) -> None:
    patient, other = await world.patient(), await world.patient()
    course_id = await _course_of(world, patient, await world.record(patient))
    with pytest.raises(NotFound):
        await _end(world, other, course_id)
    with pytest.raises(NotFound):
        await _end(world, patient, uuid.uuid4())


async def test_a_session_of_an_ended_course_cannot_be_rescheduled(world: World) -> None:
    patient = await world.patient()
    session_id = await world.record(patient)
    course_id = await _course_of(world, patient, session_id)
    world.clock.advance(days=3)  # the session's start has passed: it stays, planned
    ended = await _end(world, patient, course_id)
    assert ended.cancelled_session_ids == ()
    async with world.sessions() as s, s.begin():
        with pytest.raises(Conflict):
            await service.reschedule_session(
                s,
                patient_id=patient,
                session_id=session_id,
                data=SessionReschedule(planned_start=START + timedelta(days=5)),
                now=world.now,
            )


async def test_a_session_after_the_declared_last_one_was_held_starts_a_new_course(
    world: World,
) -> None:
    patient = await world.patient()
    last = await world.record(patient, last_in_course=True)
    course_id = await _course_of(world, patient, last)
    # Planned after a declared last session that was not held yet: the course is extended.
    extended = await world.record(patient, START + timedelta(days=5))
    assert await _course_of(world, patient, extended) == course_id
    async with world.sessions() as s, s.begin():
        await service.cancel_session(s, patient_id=patient, session_id=extended, now=world.now)
    world.clock.advance(days=3)
    await _complete(world, patient, last)
    follow_up = {r.id for r in await world.rows(patient) if r.step.startswith("mnsi-after")}
    assert follow_up

    returning = await world.record(patient, START + timedelta(days=60))
    new_course = await _course_of(world, patient, returning)
    assert new_course != course_id
    async with world.sessions() as s:
        old = await service.get_course(s, patient, course_id)
        assert (old.status, old.ended_at) == ("ended", world.now)
    rows = await world.rows(patient)
    # The new course asks its own baseline; the old course's follow-up stands (an MNSI-Q due
    # with the new baseline is merged into it, not cancelled).
    assert any(r.session_id == returning and r.step == "baseline" for r in rows)
    kept = {r.id for r in rows if r.id in follow_up and r.status in ("pending", "merged")}
    assert kept == follow_up
