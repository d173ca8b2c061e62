"""Invariants of the planner (issue 6 "Done when"), over random sessions, zones and quiet hours."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import get_args

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.domain.check_ins.merging import merge_check_ins
from backend.domain.check_ins.planning import plan_check_ins, protocol_check_ins
from backend.domain.check_ins.plans import (
    ISSUED,
    REPLANNABLE,
    CheckInPlan,
    CheckInStatus,
    ExistingCheckIn,
    PatientSchedulingContext,
    PlannedSession,
)
from backend.domain.check_ins.protocols import Modality, default_protocol
from backend.domain.check_ins.quiet_hours import QuietHours, is_quiet
from backend.domain.check_ins.replanning import apply_decision, replan

ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",  # half-hour daylight saving
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "UTC",
]
MINUTE = timedelta(minutes=1)

quarter_hours = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
patients = st.builds(
    lambda zone, start, end: PatientSchedulingContext(
        patient_id="p1", time_zone=zone, quiet_hours=QuietHours(start=start, end=end)
    ),
    st.sampled_from(ZONES),
    quarter_hours,
    quarter_hours,
)
# Whole minutes from 2024 to 2027, which covers several DST changes in every zone above.
instants = st.integers(0, 4 * 365 * 24 * 60).map(
    lambda m: datetime(2024, 1, 1, tzinfo=UTC) + m * MINUTE
)


@st.composite
def sessions(draw: st.DrawFn, id: str = "s1", after: datetime | None = None) -> PlannedSession:
    modalities: list[Modality] = ["n2o", "iv_ketamine", "esketamine"]
    modality = draw(st.sampled_from(modalities))
    if after is None:
        starts = draw(instants)
    else:
        starts = after + draw(st.integers(60, 10 * 24 * 60)) * MINUTE
    course_offset = draw(st.integers(0, 12 * 7 * 24 * 60)) * MINUTE
    next_gap = draw(st.none() | st.integers(2 * 60, 20 * 24 * 60))
    return PlannedSession(
        id=id,
        course_id="c1",
        patient_id="p1",
        modality=modality,
        starts_at=starts,
        ends_at=starts + draw(st.integers(20, 180)) * MINUTE,
        course_started_at=starts - course_offset,
        is_first_in_course=draw(st.booleans()),
        is_last_in_course=draw(st.booleans()),
        next_session_starts_at=None if next_gap is None else starts + next_gap * MINUTE,
    )


def protocol_for(session: PlannedSession) -> object:
    return default_protocol(session.modality)


def plan(session: PlannedSession, patient: PatientSchedulingContext) -> list[CheckInPlan]:
    return plan_check_ins(session, default_protocol(session.modality), patient)


def whole_window_is_quiet(p: CheckInPlan, patient: PatientSchedulingContext) -> bool:
    zone, quiet = patient.zone(), patient.quiet_hours
    minutes = int((p.closes_at - p.opens_at) / MINUTE)
    return all(is_quiet(p.opens_at + m * MINUTE, zone, quiet) for m in range(minutes))


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(sessions(), patients)
def test_every_check_in_lies_inside_its_window(
    session: PlannedSession, patient: PatientSchedulingContext
) -> None:
    for p in plan(session, patient):
        assert p.planned_opens_at <= p.opens_at <= p.due_at < p.closes_at <= p.planned_closes_at
        assert all(p.due_at < r < p.closes_at for r in p.reminders_at)
        assert p.due_at.utcoffset() == timedelta(0)
        assert p.key == f"{session.id}:{p.step}"


@SETTINGS
@given(sessions(), patients)
def test_none_is_in_quiet_hours_unless_its_window_allows_nothing_else(
    session: PlannedSession, patient: PatientSchedulingContext
) -> None:
    zone, quiet = patient.zone(), patient.quiet_hours
    for p in plan(session, patient):
        if p.merged_into is not None:
            continue
        assert all(not is_quiet(r, zone, quiet) for r in p.reminders_at)
        if p.during_quiet_hours:
            assert is_quiet(p.due_at, zone, quiet)
            assert whole_window_is_quiet(p, patient)
        else:
            assert not is_quiet(p.due_at, zone, quiet)


@SETTINGS
@given(sessions(), patients, st.randoms(use_true_random=False))
def test_plans_are_deterministic_and_independent_of_input_order(
    session: PlannedSession, patient: PatientSchedulingContext, rng: random.Random
) -> None:
    first = plan(session, patient)
    assert first == plan(session, patient)
    raw = protocol_check_ins(session, default_protocol(session.modality), patient)
    shuffled = list(raw)
    rng.shuffle(shuffled)
    assert merge_check_ins(shuffled, [], patient) == first
    assert len({p.key for p in first}) == len(first)


def mark_some(existing: list[ExistingCheckIn], rng: random.Random) -> list[ExistingCheckIn]:
    """The patient's history moves on: some check-ins are sent, answered, missed..."""
    statuses: list[CheckInStatus] = ["claimed", "sent", "answered", "missed", "failed"]
    return [
        msgspec.structs.replace(e, status=rng.choice(statuses))
        if e.status == "pending" and rng.random() < 0.3
        else e
        for e in existing
    ]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[PlannedSession], PatientSchedulingContext]:
    patient = draw(patients)
    first = draw(sessions(id="s1"))
    second = draw(sessions(id="s2", after=first.starts_at))
    second = msgspec.structs.replace(
        second, modality=first.modality, course_started_at=first.course_started_at
    )
    first = msgspec.structs.replace(first, next_session_starts_at=second.starts_at)
    return [first, second], patient


def record(
    existing: list[ExistingCheckIn], session: PlannedSession, patient: PatientSchedulingContext
) -> list[ExistingCheckIn]:
    return apply_decision(
        existing, replan(existing, session, default_protocol(session.modality), patient)
    )


def active(existing: list[ExistingCheckIn]) -> dict[str, tuple[CheckInPlan, str]]:
    return {e.plan.key: (e.plan, e.status) for e in existing if e.status != "cancelled"}


@SETTINGS
@given(
    histories(),
    st.integers(-3 * 24 * 60, 3 * 24 * 60),
    st.integers(-3 * 24 * 60, 3 * 24 * 60),
    st.randoms(use_true_random=False),
)
def test_rescheduling_twice_equals_rescheduling_once(
    history: tuple[list[PlannedSession], PatientSchedulingContext],
    shift_1: int,
    shift_2: int,
    rng: random.Random,
) -> None:
    (s1, s2), patient = history
    existing = mark_some(record(record([], s1, patient), s2, patient), rng)

    def moved(minutes: int) -> PlannedSession:
        delta = minutes * MINUTE
        starts_at = s2.starts_at + delta
        return msgspec.structs.replace(
            s2,
            starts_at=starts_at,
            ends_at=s2.ends_at + delta,
            course_started_at=min(s2.course_started_at, starts_at),
        )

    once = record(existing, moved(shift_2), patient)
    twice = record(record(existing, moved(shift_1), patient), moved(shift_2), patient)
    assert active(once) == active(twice)
    again = replan(once, moved(shift_2), default_protocol(s2.modality), patient)
    assert again.is_empty
    issued_before = {e.plan.key: e for e in existing if e.status not in REPLANNABLE}
    assert {e.plan.key: e for e in twice if e.status not in REPLANNABLE} == issued_before


@SETTINGS
@given(histories(), st.randoms(use_true_random=False))
def test_cancelling_removes_only_unsent_check_ins(
    history: tuple[list[PlannedSession], PatientSchedulingContext], rng: random.Random
) -> None:
    (s1, s2), patient = history
    existing = mark_some(record(record([], s1, patient), s2, patient), rng)
    decision = replan(
        existing,
        msgspec.structs.replace(s2, cancelled=True),
        default_protocol(s2.modality),
        patient,
    )
    by_key = {e.plan.key: e for e in existing}
    assert decision.insert == ()
    for key in decision.cancel:
        assert by_key[key].plan.session_id == "s2"
        assert by_key[key].status in ("pending", "merged")
    assert all(
        by_key[p.key].status in REPLANNABLE and p.session_id == "s1" for p in decision.update
    )
    after = apply_decision(existing, decision)
    assert not [e for e in after if e.plan.session_id == "s2" and e.status in ("pending", "merged")]
    assert [e for e in after if e.status not in REPLANNABLE] == [
        e for e in existing if e.status not in REPLANNABLE
    ]


@SETTINGS
@given(histories(), st.randoms(use_true_random=False))
def test_merging_never_drops_an_instrument_nor_touches_issued_check_ins(
    history: tuple[list[PlannedSession], PatientSchedulingContext], rng: random.Random
) -> None:
    (s1, s2), patient = history
    existing = mark_some(record([], s1, patient), rng)
    decision = replan(existing, s2, default_protocol(s2.modality), patient)
    by_key = {e.plan.key: e for e in existing}
    touched = [p.key for p in (*decision.insert, *decision.update)] + list(decision.cancel)
    assert all(by_key[k].status in REPLANNABLE for k in touched if k in by_key)
    after = apply_decision(existing, decision)
    asking = [e.plan for e in after if e.status == "pending"]
    issued = [e.plan for e in after if e.status in ISSUED]
    for row in after:
        if row.status not in ("pending", "merged"):
            continue
        wanted = row.plan
        for instrument in wanted.planned_instruments:
            assert any(
                instrument in other.instruments
                and other.opens_at < wanted.planned_closes_at
                and wanted.planned_opens_at < other.closes_at
                for other in asking + issued
            ), (wanted.key, instrument)
    # ...and no instrument is asked twice for overlapping windows.
    for a in asking:
        for b in asking:
            if a.key < b.key and a.opens_at < b.closes_at and b.opens_at < a.closes_at:
                assert not set(a.instruments) & set(b.instruments), (a.key, b.key)


def test_the_statuses_named_in_the_constants_exist() -> None:
    assert set(get_args(CheckInStatus)) >= REPLANNABLE | ISSUED


@SETTINGS
@given(
    histories(),
    st.integers(-2 * 24 * 60, 100 * 24 * 60),
    st.randoms(use_true_random=False),
)
def test_check_ins_whose_window_closed_before_planning_are_never_planned(
    history: tuple[list[PlannedSession], PatientSchedulingContext],
    minutes_after_start: int,
    rng: random.Random,
) -> None:
    (s1, s2), patient = history
    existing = mark_some(record([], s1, patient), rng)
    now = s2.starts_at + minutes_after_start * MINUTE
    protocol = default_protocol(s2.modality)
    decision = replan(existing, s2, protocol, patient, now=now)
    assert all(p.planned_closes_at > now for p in decision.insert)
    # `now` only leaves out what is new: nothing already planned is cancelled because of it.
    assert set(decision.cancel) <= set(replan(existing, s2, protocol, patient).cancel)
    after = apply_decision(existing, decision)
    assert replan(after, s2, protocol, patient, now=now).is_empty
    assert [e for e in after if e.status not in REPLANNABLE] == [
        e for e in existing if e.status not in REPLANNABLE
    ]
