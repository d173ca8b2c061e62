"""`plan_check_ins`: one treatment session's check-ins from its protocol (pure, no clock).

Which steps a session gets:
- baseline: the course's first session only;
- pre-session and the post-session ladder: every session, limited to the step's course weeks;
  a `stopsAtNextSession` occurrence is skipped when the next session starts before its window
  closes (that session's pre-session check-in supersedes it);
- course-anchored steps (monthly MNSI-Q): the occurrences due from this session's start until the
  next session starts (or, with no next session known, within one interval of this session's
  end), so consecutive sessions share the course calendar without duplicates; not on the last
  session, whose follow-up takes over;
- follow-up after the last session: only when the session is known to be the course's last.

The session's own steps are merged (`merge_check_ins`) before they are returned; to merge with
the patient's other sessions and to respect what was already sent, the service calls `replan`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgspec

from backend.domain.check_ins.merging import merge_check_ins
from backend.domain.check_ins.plans import (
    CheckInPlan,
    PatientSchedulingContext,
    PlannedSession,
    PlanningError,
    settle,
)
from backend.domain.check_ins.protocols import Protocol, Step

WEEK = timedelta(days=7)


def plan_check_ins(
    session: PlannedSession, protocol: Protocol, patient: PatientSchedulingContext
) -> list[CheckInPlan]:
    """Every check-in the session asks for, with its own duplicates merged, ordered by due time."""
    return merge_check_ins(protocol_check_ins(session, protocol, patient), [], patient)


def protocol_check_ins(
    session: PlannedSession, protocol: Protocol, patient: PatientSchedulingContext
) -> list[CheckInPlan]:
    """The session's check-ins exactly as the protocol asks, before merging."""
    _check_inputs(session, protocol, patient)
    if session.cancelled:
        return []
    session = _in_utc(session)
    plans = []
    for section, steps in protocol.sections():
        if section == "baseline" and not session.is_first_in_course:
            continue
        if section == "afterLastSession" and not session.is_last_in_course:
            continue
        for step in steps:
            if not _in_course_weeks(step, session):
                continue
            for occurrence, nominal in _occurrences(step, session):
                closes = nominal - step.offset + step.closes
                if (
                    step.stops_at_next_session
                    and session.next_session_starts_at is not None
                    and session.next_session_starts_at < closes
                ):
                    continue
                plans.append(_plan(session, protocol, patient, step, occurrence, nominal))
    return plans


def _check_inputs(
    session: PlannedSession, protocol: Protocol, patient: PatientSchedulingContext
) -> None:
    times = [session.starts_at, session.ends_at, session.course_started_at]
    if session.next_session_starts_at is not None:
        times.append(session.next_session_starts_at)
    times.extend(patient.last_answered_at.values())
    if any(t.utcoffset() is None for t in times):
        raise PlanningError("planning needs time-zone-aware datetimes")
    if session.ends_at < session.starts_at or session.starts_at < session.course_started_at:
        raise PlanningError("a session must end after it starts, and not start before its course")
    if session.modality != protocol.modality:
        raise PlanningError(
            f"a {session.modality} session cannot follow a {protocol.modality} protocol"
        )
    if session.patient_id != patient.patient_id:
        raise PlanningError("the session belongs to another patient")
    patient.zone()


def _in_utc(session: PlannedSession) -> PlannedSession:
    next_start = session.next_session_starts_at
    return msgspec.structs.replace(
        session,
        starts_at=session.starts_at.astimezone(UTC),
        ends_at=session.ends_at.astimezone(UTC),
        course_started_at=session.course_started_at.astimezone(UTC),
        next_session_starts_at=None if next_start is None else next_start.astimezone(UTC),
    )


def _in_course_weeks(step: Step, session: PlannedSession) -> bool:
    if step.course_weeks is None:
        return True
    week = (session.starts_at - session.course_started_at) // WEEK + 1
    last = step.course_weeks.last
    return step.course_weeks.first <= week and (last is None or week <= last)


def _occurrences(step: Step, session: PlannedSession) -> Iterator[tuple[str, datetime]]:
    """(step name, nominal due time) of each occurrence; repeats are numbered from 1."""
    if step.anchor == "course_start":
        yield from _course_occurrences(step, session)
        return
    anchor = session.starts_at if step.anchor == "session_start" else session.ends_at
    if step.repeat is None:
        yield step.id, anchor + step.offset
        return
    assert step.repeat.through is not None  # checked when the protocol is loaded
    number, offset = 1, step.offset
    while offset <= step.repeat.through:
        yield f"{step.id}#{number}", anchor + offset
        number, offset = number + 1, offset + step.repeat.every


def _course_occurrences(step: Step, session: PlannedSession) -> Iterator[tuple[str, datetime]]:
    if session.is_last_in_course:
        return
    assert step.repeat is not None  # checked when the protocol is loaded
    every = step.repeat.every
    first = session.course_started_at + step.offset
    end = session.next_session_starts_at or session.ends_at + every
    index = max(0, math.ceil((session.starts_at - first) / every))
    while (due := first + index * every) < end:
        if (
            step.repeat.through is not None
            and due - session.course_started_at > step.repeat.through
        ):
            return
        yield f"{step.id}#{index + 1}", due
        index += 1


def _plan(
    session: PlannedSession,
    protocol: Protocol,
    patient: PatientSchedulingContext,
    step: Step,
    occurrence: str,
    nominal: datetime,
) -> CheckInPlan:
    opens = nominal - step.offset + step.opens
    closes = nominal - step.offset + step.closes
    instruments = _substituted(step, nominal, patient)
    draft = CheckInPlan(
        key=f"{session.id}:{occurrence}",
        patient_id=session.patient_id,
        course_id=session.course_id,
        session_id=session.id,
        protocol_id=protocol.id,
        protocol_version=protocol.version,
        step=occurrence,
        label=step.label,
        planned_priority=step.priority,
        planned_instruments=instruments,
        planned_opens_at=opens,
        planned_closes_at=closes,
        nominal_due_at=nominal,
        reminder_delays=step.reminders
        if step.reminders is not None
        else protocol.defaults.reminders,
        missed_flag_after=protocol.defaults.missed_flag_after,
        priority=step.priority,
        instruments=instruments,
        opens_at=opens,
        closes_at=closes,
        due_at=nominal,
        during_quiet_hours=False,
        reminders_at=(),
        missed_flag_at=nominal,
    )
    return settle(
        draft,
        instruments=instruments,
        opens_at=opens,
        closes_at=closes,
        nominal=nominal,
        patient=patient,
    )


def _substituted(step: Step, due: datetime, patient: PatientSchedulingContext) -> tuple[str, ...]:
    rule = step.substitution
    if rule is None:
        return step.instruments
    last = patient.last_answered_at.get(rule.use)
    if last is not None and due - last < rule.when_older_than:
        return step.instruments
    return tuple(rule.use if i == rule.replace else i for i in step.instruments)
