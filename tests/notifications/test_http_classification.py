from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifications.base import RETRYABLE_REASONS, DeliveryError, FailureReason
from notifications.http import MAX_RETRY_AFTER_SECONDS, classify_status, parse_retry_after

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@given(st.integers(min_value=200, max_value=299))
def test_2xx_is_success(status: int) -> None:
    assert classify_status(status, now=NOW) is None


@given(st.integers(min_value=500, max_value=599))
def test_5xx_is_retryable(status: int) -> None:
    error = classify_status(status, now=NOW)
    assert error is not None
    assert error.retryable
    assert error.reason is FailureReason.PROVIDER_UNAVAILABLE


def test_429_is_retryable_and_carries_retry_after() -> None:
    error = classify_status(429, retry_after="17", now=NOW)
    assert error is not None
    assert error.retryable
    assert error.reason is FailureReason.RATE_LIMITED
    assert error.retry_after_seconds == 17


def test_503_carries_retry_after_too() -> None:
    error = classify_status(503, retry_after="5", now=NOW)
    assert error is not None
    assert error.retry_after_seconds == 5


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_retryable(status: int) -> None:
    error = classify_status(status, now=NOW)
    assert error is not None
    assert (error.reason, error.retryable) == (FailureReason.AUTH_FAILED, True)


def test_408_is_a_timeout() -> None:
    error = classify_status(408, now=NOW)
    assert error is not None
    assert (error.reason, error.retryable) == (FailureReason.TIMEOUT, True)


@given(st.integers(min_value=400, max_value=499).filter(lambda s: s not in {401, 403, 408, 429}))
def test_other_4xx_are_permanent(status: int) -> None:
    error = classify_status(status, now=NOW)
    assert error is not None
    assert not error.retryable
    assert error.http_status == status


@pytest.mark.parametrize("status", [101, 301, 302, 304])
def test_redirects_are_not_followed_and_count_as_misconfiguration(status: int) -> None:
    error = classify_status(status, now=NOW)
    assert error is not None
    assert error.reason is FailureReason.MISCONFIGURED


def test_retry_after_accepts_an_http_date() -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, NOW) == 90


@pytest.mark.parametrize("value", [None, "soon", "-5", "1.5", ""])
def test_unreadable_retry_after_is_no_advice(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_after_in_the_past_means_now_and_huge_values_are_capped() -> None:
    earlier = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(earlier, NOW) == 0
    assert parse_retry_after(str(10**9), NOW) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("reason", list(FailureReason))
def test_the_error_message_is_the_reason_and_nothing_else(reason: FailureReason) -> None:
    error = DeliveryError(reason, http_status=418)
    assert str(error) == f"{reason.value} (HTTP 418)"
    assert error.retryable is (reason in RETRYABLE_REASONS)


def test_recipient_and_token_problems_are_permanent() -> None:
    for reason in (
        FailureReason.TOKEN_INVALID,
        FailureReason.RECIPIENT_INVALID,
        FailureReason.REJECTED,
        FailureReason.PAYLOAD_TOO_LARGE,
    ):
        assert reason not in RETRYABLE_REASONS
