"""N2O exposure accounting against the SmPC limits of clinical-spec §5.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.domain.check_ins.exposure import (
    N2OSession,
    cumulative_inhalation,
    decode_thresholds,
    exposure_triggers,
    n2o_exposure,
    shipped_thresholds,
    shortest_interval,
)
from backend.domain.check_ins.plans import PlanningError

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
START = datetime(2025, 6, 2, 9, tzinfo=UTC)


def course(every: timedelta, count: int, inhalation: timedelta = HOUR) -> list[N2OSession]:
    return [
        N2OSession(
            session_id=f"s{n}", inhalation_started_at=START + n * every, inhalation=inhalation
        )
        for n in range(count)
    ]


def test_shipped_thresholds_are_the_smpc_limits() -> None:
    limits = shipped_thresholds()
    assert limits.cumulative_inhalation_limit == 24 * HOUR
    assert limits.minimum_interval == 4 * DAY
    assert limits.rolling_window == 28 * DAY


def test_weekly_one_hour_sessions_meet_no_limit() -> None:
    # NCT05357040: weekly 1 h sessions for 4 weeks.
    exposure = n2o_exposure(course(7 * DAY, 4), as_of=START + 22 * DAY)
    assert exposure.cumulative_inhalation == 4 * HOUR
    assert exposure.shortest_interval == 7 * DAY
    assert exposure.triggers == ()
    assert not exposure.haematological_monitoring_due


def test_twice_weekly_sessions_are_more_frequent_than_every_four_days() -> None:
    # Guimarães 2021: twice weekly for 4 weeks -> the SmPC "every 4 days" trigger (§5.1).
    sessions = course(timedelta(days=3, hours=12), 8)
    exposure = n2o_exposure(sessions, as_of=START + 30 * DAY)
    assert exposure.haematological_monitoring_due
    [trigger] = exposure.triggers
    assert (trigger.kind, trigger.session_id) == ("short_interval", "s1")
    assert trigger.value == timedelta(days=3, hours=12)
    assert exposure.peak_cumulative_inhalation == 8 * HOUR


def test_cumulative_exposure_reaching_24_hours_in_28_days_triggers_at_that_session() -> None:
    sessions = course(4 * DAY, 7, inhalation=4 * HOUR)  # 28 h over 24 days
    [trigger] = exposure_triggers(sessions, shipped_thresholds())
    assert (trigger.kind, trigger.session_id, trigger.value) == (
        "cumulative_inhalation",
        "s5",
        24 * HOUR,
    )


def test_the_rolling_window_counts_only_the_part_of_a_session_inside_it() -> None:
    [session] = course(DAY, 1, inhalation=2 * HOUR)
    assert cumulative_inhalation([session], START + HOUR, 28 * DAY) == HOUR
    assert cumulative_inhalation([session], START + 28 * DAY + HOUR, 28 * DAY) == HOUR
    assert cumulative_inhalation([session], START + 29 * DAY, 28 * DAY) == timedelta(0)


def test_no_sessions_no_exposure() -> None:
    exposure = n2o_exposure([], as_of=START)
    assert exposure.peak_cumulative_inhalation == timedelta(0)
    assert exposure.shortest_interval is None
    assert shortest_interval(course(DAY, 1)) is None


def test_inconsistent_inputs_are_refused() -> None:
    naive = N2OSession(session_id="a", inhalation_started_at=datetime(2025, 6, 2), inhalation=HOUR)
    negative = N2OSession(session_id="a", inhalation_started_at=START, inhalation=-HOUR)
    for sessions in ([naive], [negative], course(DAY, 1) * 2):
        with pytest.raises(PlanningError):
            n2o_exposure(sessions, as_of=START)
    with pytest.raises(PlanningError, match="positive"):
        decode_thresholds(
            b'{"source": "x", "cumulativeInhalationLimit": "PT0S", "rollingWindow": "P28D",'
            b' "minimumInterval": "P4D"}',
            "t.json",
        )
    with pytest.raises(PlanningError, match=r"t\.json"):
        decode_thresholds(b"{}", "t.json")


@given(
    gaps=st.lists(st.integers(min_value=0, max_value=20 * 24 * 60), min_size=1, max_size=12),
    minutes=st.lists(st.integers(min_value=0, max_value=8 * 60), min_size=12, max_size=12),
)
def test_triggers_agree_with_a_direct_reading_of_the_limits(
    gaps: list[int], minutes: list[int]
) -> None:
    starts = [START + timedelta(minutes=sum(gaps[: n + 1])) for n in range(len(gaps))]
    sessions = [
        N2OSession(session_id=f"s{n}", inhalation_started_at=t, inhalation=timedelta(minutes=m))
        for n, (t, m) in enumerate(zip(starts, minutes, strict=False))
    ]
    limits = shipped_thresholds()
    kinds = {t.kind for t in exposure_triggers(sessions, limits)}
    interval = shortest_interval(sessions)
    assert ("short_interval" in kinds) == (interval is not None and interval < 4 * DAY)

    # Direct reading: the 28-day total ending at each session's end, minute by minute.
    def inhaling_minutes(until: datetime) -> int:
        return sum(
            1
            for s in sessions
            for m in range(int(s.inhalation / timedelta(minutes=1)))
            if until - 28 * DAY <= s.inhalation_started_at + timedelta(minutes=m) < until
        )

    peak = max(inhaling_minutes(s.inhalation_ended_at) for s in sessions) * timedelta(minutes=1)
    assert ("cumulative_inhalation" in kinds) == (peak >= 24 * HOUR)
    assert n2o_exposure(sessions, as_of=START).peak_cumulative_inhalation == peak
