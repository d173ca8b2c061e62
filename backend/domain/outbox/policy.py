"""What to do after a send attempt: pure rules, no I/O.

Retries back off exponentially with full jitter (so instances recovering together do not retry in
lock-step) and honour a provider's Retry-After; after ``max_attempts`` a message is dead-lettered
for an operator to see, never silently dropped.
"""

import random
from datetime import datetime, timedelta
from enum import StrEnum

import msgspec

from notifications.base import Receipt


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    base_seconds: float = 2.0
    cap_seconds: float = 900.0
    max_attempts: int = 8


class Verdict(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"  # permanent: the provider refused this recipient or request
    DEAD = "dead"  # retryable, but out of attempts


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    verdict: Verdict
    next_attempt_at: datetime | None = None


def backoff(attempts: int, policy: RetryPolicy, rng: random.Random) -> timedelta:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**(attempts-1))]."""
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2 ** max(0, attempts - 1))
    return timedelta(seconds=rng.uniform(0, ceiling))


def decide(
    receipt: Receipt,
    *,
    attempts: int,
    max_attempts: int,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> Decision:
    if receipt.succeeded:
        return Decision(verdict=Verdict.SENT)
    if not receipt.retryable:
        return Decision(verdict=Verdict.FAILED)
    if attempts >= max_attempts:
        return Decision(verdict=Verdict.DEAD)
    delay = backoff(attempts, policy, rng)
    if receipt.retry_after_seconds is not None:
        delay = max(delay, timedelta(seconds=min(receipt.retry_after_seconds, policy.cap_seconds)))
    return Decision(verdict=Verdict.RETRY, next_attempt_at=now + delay)
