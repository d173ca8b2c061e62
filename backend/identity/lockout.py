"""When repeated sign-in failures lock an account or a source out (pure rules, no I/O).

After ``free_attempts`` failures each further failure doubles the wait, up to ``max_delay``
(exponential backoff, OWASP Authentication Cheat Sheet "Account lockout"). A counter whose last
failure is older than ``forget_after`` starts again. The counters themselves live in the database
(``repositories.record_login_failure``), so the lock holds across instances.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    free_attempts: int
    base_delay: timedelta
    max_delay: timedelta
    forget_after: timedelta


# Per account: five tries, then 1, 2, 4 … minutes, at most an hour; forgotten after a quiet day.
ACCOUNT_POLICY: Final = LockoutPolicy(
    free_attempts=5,
    base_delay=timedelta(minutes=1),
    max_delay=timedelta(hours=1),
    forget_after=timedelta(hours=24),
)
# Per source address: wider, because a clinic's staff may share one NAT address.
SOURCE_POLICY: Final = LockoutPolicy(
    free_attempts=20,
    base_delay=timedelta(minutes=1),
    max_delay=timedelta(hours=1),
    forget_after=timedelta(hours=1),
)


def lockout_delay(policy: LockoutPolicy, failures: int) -> timedelta:
    """How long after the latest failure the next attempt must wait (zero while attempts remain)."""
    if failures < policy.free_attempts:
        return timedelta(0)
    doublings = failures - policy.free_attempts
    # A huge shift overflows timedelta long before it matters; the cap is reached in a few steps.
    if doublings >= 32:
        return policy.max_delay
    return min(policy.base_delay * (1 << doublings), policy.max_delay)


def locked_until(
    policy: LockoutPolicy, failures: int, last_failure_at: datetime, now: datetime
) -> datetime | None:
    """The end of the current lock, or None when an attempt may proceed now."""
    if now - last_failure_at > policy.forget_after:
        return None
    delay = lockout_delay(policy, failures)
    if delay <= timedelta(0):
        return None
    until = last_failure_at + delay
    return until if until > now else None
