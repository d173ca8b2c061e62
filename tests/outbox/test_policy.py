"""Retry decisions after a send attempt (pure)."""

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from backend.domain.outbox.policy import RetryPolicy, Verdict, backoff, decide
from notifications.base import Channel, DeliveryStatus, FailureReason, Receipt

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=2, cap_seconds=600, max_attempts=5)


def _receipt(status: DeliveryStatus, retry_after: float | None = None) -> Receipt:
    reason = (
        None
        if status in (DeliveryStatus.DELIVERED, DeliveryStatus.ACCEPTED)
        else (FailureReason.PROVIDER_UNAVAILABLE)
    )
    return Receipt(
        message_id="m1",
        channel=Channel.WEBHOOK,
        status=status,
        reason=reason,
        retry_after_seconds=retry_after,
    )


def test_a_delivered_or_accepted_message_is_sent() -> None:
    for status in (DeliveryStatus.DELIVERED, DeliveryStatus.ACCEPTED):
        decision = decide(
            _receipt(status),
            attempts=1,
            max_attempts=5,
            now=NOW,
            policy=POLICY,
            rng=random.Random(1),
        )
        assert decision.verdict is Verdict.SENT


def test_a_permanent_failure_is_not_retried() -> None:
    decision = decide(
        _receipt(DeliveryStatus.PERMANENT_FAILURE),
        attempts=1,
        max_attempts=5,
        now=NOW,
        policy=POLICY,
        rng=random.Random(1),
    )
    assert decision.verdict is Verdict.FAILED


def test_retryable_failures_are_dead_lettered_after_the_last_attempt() -> None:
    retry = _receipt(DeliveryStatus.RETRYABLE_FAILURE)
    assert (
        decide(
            retry, attempts=4, max_attempts=5, now=NOW, policy=POLICY, rng=random.Random(1)
        ).verdict
        is Verdict.RETRY
    )
    assert (
        decide(
            retry, attempts=5, max_attempts=5, now=NOW, policy=POLICY, rng=random.Random(1)
        ).verdict
        is Verdict.DEAD
    )


@given(attempts=st.integers(1, 40), seed=st.integers(0, 2**32))
def test_backoff_stays_within_the_exponential_ceiling_and_the_cap(attempts: int, seed: int) -> None:
    delay = backoff(attempts, POLICY, random.Random(seed))
    ceiling = min(POLICY.cap_seconds, POLICY.base_seconds * 2 ** (attempts - 1))
    assert timedelta(0) <= delay <= timedelta(seconds=ceiling)


@given(retry_after=st.floats(0, 10_000), seed=st.integers(0, 2**32))
def test_a_providers_retry_after_is_honoured_up_to_the_cap(retry_after: float, seed: int) -> None:
    decision = decide(
        _receipt(DeliveryStatus.RETRYABLE_FAILURE, retry_after),
        attempts=1,
        max_attempts=5,
        now=NOW,
        policy=POLICY,
        rng=random.Random(seed),
    )
    assert decision.next_attempt_at is not None
    waited = (decision.next_attempt_at - NOW).total_seconds()
    assert waited >= min(retry_after, POLICY.cap_seconds) - 1e-6
    assert waited <= POLICY.cap_seconds + 1e-6
