"""Quiet hours in the patient's local time, including daylight-saving days."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from backend.domain.check_ins.planning import plan_check_ins
from backend.domain.check_ins.plans import CheckInPlan
from backend.domain.check_ins.protocols import default_protocol
from backend.domain.check_ins.quiet_hours import (
    QuietHours,
    is_quiet,
    place_in_window,
    place_reminder,
)
from tests.check_ins.builders import PARIS, by_step, local, patient, session

NEW_YORK = ZoneInfo("America/New_York")
DEFAULT = QuietHours()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def two_hour_check_in(ends_at: datetime, **kwargs: Any) -> CheckInPlan:
    plans = by_step(
        plan_check_ins(session(ends_at=ends_at), default_protocol("n2o"), patient(**kwargs))
    )
    return plans["2h"]


@pytest.mark.parametrize(
    ("quiet", "wall", "expected"),
    [
        (DEFAULT, time(20, 59), False),
        (DEFAULT, time(21, 0), True),
        (DEFAULT, time(3, 0), True),
        (DEFAULT, time(8, 0), False),
        (QuietHours(start=time(1), end=time(5)), time(0, 30), False),
        (QuietHours(start=time(1), end=time(5)), time(4, 59), True),
        (QuietHours(start=time(7), end=time(7)), time(7), False),  # start == end: none
    ],
)
def test_quiet_hours_are_a_half_open_wall_clock_range(
    quiet: QuietHours, wall: time, expected: bool
) -> None:
    assert quiet.contains(wall) is expected


def test_a_check_in_due_in_quiet_hours_fires_when_they_end() -> None:
    # Session ends 23:00; +24 h falls at 23:00 next day, quiet; 08:00 is inside [18 h, 36 h).
    plans = by_step(
        plan_check_ins(
            session(ends_at=local(PARIS, 2025, 6, 3, 23)), default_protocol("n2o"), patient()
        )
    )
    assert plans["24h"].due_at == local(PARIS, 2025, 6, 5, 8)
    assert not plans["24h"].during_quiet_hours


def test_when_quiet_hours_outlast_the_window_it_fires_at_the_latest_minute_before_them() -> None:
    # Session ends 19:00: +2 h is 21:00 (quiet); window [20:30, 23:00) closes before 08:00.
    plan = two_hour_check_in(local(PARIS, 2025, 6, 3, 19))
    assert plan.due_at == local(PARIS, 2025, 6, 3, 20, 59)
    assert not plan.during_quiet_hours


def test_a_window_entirely_in_quiet_hours_keeps_its_time_and_is_flagged_for_silent_delivery() -> (
    None
):
    plan = two_hour_check_in(local(PARIS, 2025, 6, 3, 19, 30))  # window [21:00, 23:30)
    assert plan.due_at == local(PARIS, 2025, 6, 3, 21, 30)
    assert plan.during_quiet_hours
    assert plan.reminders_at == ()


def test_quiet_hours_are_per_patient() -> None:
    ends = local(PARIS, 2025, 6, 3, 19, 30)  # +2 h at 21:30
    late_sleeper = two_hour_check_in(ends, quiet=(time(23), time(7)))
    assert late_sleeper.due_at == local(PARIS, 2025, 6, 3, 21, 30)
    assert not late_sleeper.during_quiet_hours
    none = two_hour_check_in(ends, quiet=(time(0), time(0)))
    assert not none.during_quiet_hours


def test_quiet_hours_follow_the_patients_zone() -> None:
    # 19:30 UTC is 21:30 in Paris (quiet) but 15:30 in New York (not).
    ends = utc(2025, 6, 3, 17, 30)
    assert two_hour_check_in(ends).during_quiet_hours
    in_new_york = two_hour_check_in(ends, zone="America/New_York")
    assert in_new_york.due_at == utc(2025, 6, 3, 19, 30)


# Europe/Paris: 30 March 2025 02:00 CET -> 03:00 CEST; 26 October 2025 03:00 CEST -> 02:00 CET.


def test_spring_forward_night_quiet_hours_end_at_8_local_summer_time() -> None:
    nominal = local(PARIS, 2025, 3, 29, 23)
    placed = place_in_window(nominal, nominal, nominal + timedelta(days=1), PARIS, DEFAULT)
    assert placed.at == utc(2025, 3, 30, 6)  # 08:00 CEST, only 9 h of elapsed time later
    assert placed.at == local(PARIS, 2025, 3, 30, 8)


def test_quiet_hours_ending_inside_the_spring_forward_gap_end_at_the_jump() -> None:
    quiet = QuietHours(start=time(22), end=time(2, 30))  # 02:30 does not exist on 30 March
    nominal = local(PARIS, 2025, 3, 30, 1, 30)
    placed = place_in_window(nominal, nominal, nominal + timedelta(hours=6), PARIS, quiet)
    assert placed.at == utc(2025, 3, 30, 1)  # the instant the wall clock jumps to 03:00
    assert not is_quiet(placed.at, PARIS, quiet)
    assert is_quiet(placed.at - timedelta(seconds=1), PARIS, quiet)


def test_fall_back_night_quiet_hours_end_at_8_local_winter_time() -> None:
    nominal = local(PARIS, 2025, 10, 25, 22)
    placed = place_in_window(nominal, nominal, nominal + timedelta(days=1), PARIS, DEFAULT)
    assert placed.at == utc(2025, 10, 26, 7)  # 08:00 CET, 11 h of elapsed time later


def test_quiet_hours_ending_in_the_repeated_hour_end_at_its_first_pass() -> None:
    quiet = QuietHours(start=time(22), end=time(2, 30))  # 02:30 happens twice on 26 October
    nominal = local(PARIS, 2025, 10, 25, 23)
    placed = place_in_window(nominal, nominal, nominal + timedelta(hours=12), PARIS, quiet)
    assert placed.at == utc(2025, 10, 26, 0, 30)  # 02:30 CEST
    # After the clocks go back, 02:00-02:30 CET is quiet again by the wall clock.
    assert is_quiet(utc(2025, 10, 26, 1, 15), PARIS, quiet)


def test_latest_allowed_minute_before_quiet_hours_on_a_dst_evening() -> None:
    # New York: 2 March... 9 March 2025 is spring-forward; a window on the evening before it.
    nominal = local(NEW_YORK, 2025, 3, 8, 22)
    placed = place_in_window(
        nominal, local(NEW_YORK, 2025, 3, 8, 18), local(NEW_YORK, 2025, 3, 9, 7), NEW_YORK, DEFAULT
    )
    assert placed.at == local(NEW_YORK, 2025, 3, 8, 20, 59)


def test_reminders_stay_after_the_due_time_and_inside_the_window() -> None:
    due = local(PARIS, 2025, 6, 3, 14)
    closes = local(PARIS, 2025, 6, 3, 14, 1)
    assert place_reminder(due + timedelta(hours=12), due, closes, PARIS, DEFAULT) is None
    closes = local(PARIS, 2025, 6, 4, 2)
    at = place_reminder(due + timedelta(hours=12), due, closes, PARIS, DEFAULT)
    assert at == local(PARIS, 2025, 6, 3, 20, 59)
    # In a window that is quiet after the due time, no reminder at all.
    late_due = local(PARIS, 2025, 6, 3, 20, 59)
    assert place_reminder(late_due + timedelta(hours=1), late_due, closes, PARIS, DEFAULT) is None
