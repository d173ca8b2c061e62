"""The fallback plan as pure functions: when each step is due, and what the timer does now."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from backend.domain.fallback.plan import (
    DEFAULT_TIMINGS,
    Act,
    Action,
    FallbackTimings,
    Finish,
    Reach,
    Step,
    Wait,
    decide,
    load_timings,
    step_times,
)

SENT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ALL = Reach(push=True, sms=True)


def _decide(now: datetime, **kw: object) -> object:
    arguments: dict[str, object] = {
        "steps_done": 0,
        "first_sent": SENT,
        "closes_at": SENT + timedelta(hours=12),
        "now": now,
        "check_in_status": "sent",
        "confirmed": False,
        "reach": ALL,
    }
    arguments.update(kw)
    return decide(**arguments)  # type: ignore[arg-type]


def test_the_timings_are_data_in_the_repository() -> None:
    assert load_timings() == DEFAULT_TIMINGS
    assert [s.action for s in DEFAULT_TIMINGS.steps] == [
        Action.RESEND_PUSH,
        Action.SMS,
        Action.STAFF_TASK,
    ]


def test_a_long_window_takes_the_steps_at_their_times_in_order() -> None:
    times = step_times(SENT, SENT + timedelta(hours=12))
    assert times == [SENT + timedelta(minutes=s.after_minutes) for s in DEFAULT_TIMINGS.steps]
    assert _decide(SENT) == Wait(step=0, until=times[0])
    assert _decide(times[0]) == Act(step=0, action=Action.RESEND_PUSH, next_at=times[1])
    assert _decide(times[1], steps_done=1) == Act(step=1, action=Action.SMS, next_at=times[2])
    assert _decide(times[2], steps_done=2) == Act(step=2, action=Action.STAFF_TASK, next_at=None)
    assert _decide(times[2], steps_done=3) == Finish(status="finished", outcome="no_step_left")


def test_a_receipt_an_answer_or_the_closed_window_ends_the_watch() -> None:
    later = SENT + timedelta(hours=1)
    assert _decide(later, confirmed=True) == Finish(status="confirmed", outcome="receipt")
    assert _decide(later, check_in_status="answered") == Finish(status="closed", outcome="answered")
    assert _decide(later, check_in_status=None) == Finish(status="closed", outcome="check_in_gone")
    assert _decide(SENT + timedelta(hours=12)) == Finish(status="closed", outcome="window_closed")


def test_without_sms_opt_in_the_text_is_skipped_and_staff_follow_up() -> None:
    times = step_times(SENT, SENT + timedelta(hours=12))
    push_only = Reach(push=True, sms=False)
    assert _decide(times[1], steps_done=1, reach=push_only) == Wait(step=2, until=times[2])
    assert _decide(times[2], steps_done=1, reach=push_only) == Act(
        step=2, action=Action.STAFF_TASK, next_at=None
    )


def test_without_push_the_text_is_the_first_contact() -> None:
    sms_only = Reach(push=False, sms=True)
    assert _decide(SENT, reach=sms_only) == Act(
        step=1, action=Action.SMS, next_at=step_times(SENT, SENT + timedelta(hours=12))[2]
    )


def test_after_downtime_only_the_latest_overdue_step_is_taken() -> None:
    times = step_times(SENT, SENT + timedelta(hours=12))
    assert _decide(times[1] + timedelta(minutes=1)) == Act(
        step=1, action=Action.SMS, next_at=times[2]
    )


@given(
    window_minutes=st.integers(min_value=1, max_value=14 * 24 * 60),
    delays=st.lists(
        st.integers(min_value=1, max_value=3000), min_size=1, max_size=5, unique=True
    ).map(sorted),
    margin=st.integers(min_value=0, max_value=600),
)
def test_every_step_is_due_in_order_before_the_window_closes(
    window_minutes: int, delays: list[int], margin: int
) -> None:
    timings = FallbackTimings(
        steps=tuple(Step(action=Action.SMS, after_minutes=d) for d in delays),
        finish_before_close_minutes=margin,
    )
    closes = SENT + timedelta(minutes=window_minutes)
    times = step_times(SENT, closes, timings)
    assert times == sorted(times)
    assert all(SENT <= t < closes for t in times)
    margin = max(margin, 1)
    if window_minutes > margin:
        assert times[-1] <= closes - timedelta(minutes=margin)
    if SENT + timedelta(minutes=delays[-1] + margin) <= closes:
        assert times == [SENT + timedelta(minutes=d) for d in delays]  # no compression needed
