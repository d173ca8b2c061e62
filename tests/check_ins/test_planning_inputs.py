"""The planner refuses contradictory inputs, and the less common protocol shapes plan correctly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import msgspec
import pytest

from backend.domain.check_ins.planning import plan_check_ins
from backend.domain.check_ins.plans import PlanningError
from backend.domain.check_ins.protocols import decode_protocol, default_protocol
from backend.domain.check_ins.quiet_hours import QuietHours, place_in_window
from tests.check_ins.builders import PARIS, by_step, local, patient, session

N2O = default_protocol("n2o")
ENDS = local(PARIS, 2025, 6, 3, 14)


@pytest.mark.parametrize(
    ("planned", "context", "problem"),
    [
        (session(ends_at=ENDS, next_starts_at=datetime(2025, 6, 9)), patient(), "aware"),
        (session(ends_at=ENDS), patient(last_answered_at={"phq9": datetime(2025, 6, 1)}), "aware"),
        (msgspec.structs.replace(session(ends_at=ENDS), ends_at=ENDS - timedelta(hours=2)),
         patient(), "end after it starts"),
        (session(ends_at=ENDS, course_started_at=ENDS), patient(), "before its course"),
        (session(ends_at=ENDS, modality="esketamine"), patient(), "cannot follow"),
        (msgspec.structs.replace(session(ends_at=ENDS), patient_id="p2"), patient(),
         "another patient"),
        (session(ends_at=ENDS), patient(zone="Mars/Olympus_Mons"), "unknown time zone"),
    ],
)  # fmt: skip
def test_contradictory_inputs_are_refused(planned: object, context: object, problem: str) -> None:
    with pytest.raises(PlanningError, match=problem):
        plan_check_ins(planned, N2O, context)  # type: ignore[arg-type]


def test_a_cancelled_session_plans_nothing() -> None:
    assert plan_check_ins(session(ends_at=ENDS, cancelled=True), N2O, patient()) == []


def test_local_session_times_give_utc_plans_and_expiry_is_the_window_close() -> None:
    plans = by_step(plan_check_ins(session(ends_at=ENDS), N2O, patient()))
    day_7 = plans["day-7"]
    assert day_7.expires_at == day_7.closes_at == local(PARIS, 2025, 6, 12, 14)
    assert day_7.closes_at.tzinfo is UTC


def test_a_course_anchored_step_may_stop_after_a_number_of_months() -> None:
    doc = json.loads(msgspec.json.encode(N2O))
    doc["afterSession"][0]["repeat"]["through"] = "P56D"  # MNSI-Q at course days 28 and 56 only
    protocol = decode_protocol(json.dumps(doc).encode(), "t.json")
    course_start = local(PARIS, 2025, 4, 1, 13)
    late = session(ends_at=local(PARIS, 2025, 5, 27, 14), course_started_at=course_start)
    assert "mnsi-monthly#2" in by_step(plan_check_ins(late, protocol, patient()))
    later = session(ends_at=local(PARIS, 2025, 6, 24, 14), course_started_at=course_start)
    assert not [s for s in by_step(plan_check_ins(later, protocol, patient())) if "mnsi" in s]


def test_a_non_quiet_moment_shorter_than_a_minute_does_not_count() -> None:
    opens = datetime(2025, 6, 3, 18, 59, 30, tzinfo=UTC)  # 20:59:30 in Paris
    nominal = opens + timedelta(minutes=30)
    placed = place_in_window(nominal, opens, opens + timedelta(hours=2), PARIS, QuietHours())
    assert placed.during_quiet_hours
    assert placed.at == nominal


def test_quiet_hours_without_a_quiet_period_change_nothing() -> None:
    none = QuietHours(start=time(9), end=time(9))
    assert place_in_window(ENDS, ENDS, ENDS + timedelta(hours=1), PARIS, none).at == ENDS
