"""Lockout after repeated failures: exponential backoff, capped, forgotten after quiet."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from backend.identity.lockout import (
    ACCOUNT_POLICY,
    SOURCE_POLICY,
    LockoutPolicy,
    locked_until,
    lockout_delay,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
policies = st.sampled_from([ACCOUNT_POLICY, SOURCE_POLICY])


def test_five_failures_lock_an_account_for_a_minute_then_doubling() -> None:
    assert lockout_delay(ACCOUNT_POLICY, 4) == timedelta(0)
    assert lockout_delay(ACCOUNT_POLICY, 5) == timedelta(minutes=1)
    assert lockout_delay(ACCOUNT_POLICY, 6) == timedelta(minutes=2)
    assert lockout_delay(ACCOUNT_POLICY, 7) == timedelta(minutes=4)
    assert lockout_delay(ACCOUNT_POLICY, 100) == timedelta(hours=1)
    assert lockout_delay(ACCOUNT_POLICY, 10**9) == timedelta(hours=1)


def test_lock_ends_after_the_delay() -> None:
    last = NOW
    assert locked_until(ACCOUNT_POLICY, 5, last, NOW) == NOW + timedelta(minutes=1)
    assert locked_until(ACCOUNT_POLICY, 5, last, NOW + timedelta(minutes=1)) is None
    assert locked_until(ACCOUNT_POLICY, 4, last, NOW) is None


@given(policies, st.integers(min_value=0, max_value=10_000))
def test_delay_never_shrinks_with_more_failures_and_never_exceeds_the_cap(
    policy: LockoutPolicy, failures: int
) -> None:
    assert lockout_delay(policy, failures) <= lockout_delay(policy, failures + 1)
    assert timedelta(0) <= lockout_delay(policy, failures) <= policy.max_delay


@given(policies, st.integers(min_value=0, max_value=1000), st.integers(0, 10**7))
def test_a_lock_never_outlasts_the_cap_after_the_last_failure(
    policy: LockoutPolicy, failures: int, seconds_later: int
) -> None:
    now = NOW + timedelta(seconds=seconds_later)
    until = locked_until(policy, failures, NOW, now)
    if until is not None:
        assert now < until <= NOW + policy.max_delay
        assert failures >= policy.free_attempts
