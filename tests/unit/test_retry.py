"""Retry decisions, table-driven."""

from __future__ import annotations

import random

import pytest

from worker.providers import errors as E
from worker.retry import backoff_s, throttle_delay_s


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(0, 1.0, 2.0), (1, 2.0, 4.0), (3, 8.0, 16.0), (10, 30.0, 60.0), (-1, 1.0, 2.0)],
)
def test_backoff_doubles_with_jitter_and_caps(attempt: int, low: float, high: float) -> None:
    rng = random.Random(7)
    for _ in range(50):
        assert low <= backoff_s(attempt, base_s=2.0, cap_s=60.0, rng=rng) <= high


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (E.ProviderUnavailable("503", provider="p", status_code=503), True),
        (E.RateLimited("429", provider="p", retry_after_s=3), True),
        (E.ConcurrencyLimited("429", provider="p"), True),
        (E.BadRequest("400", provider="p", status_code=400), False),
        (E.AuthFailed("401", provider="p"), False),
        (E.PaymentRequired("402", provider="p"), False),
        (E.NotFound("404", provider="p"), False),
        (E.Conflict("409", provider="p"), False),
        (E.JobRejected("REJECTED", provider="p"), False),
    ],
)
def test_what_is_retryable(error: E.ProviderError, retryable: bool) -> None:
    assert error.retryable is retryable


@pytest.mark.parametrize(
    ("retry_after_s", "low", "high"), [(3.0, 3.0, 3.25), (500.0, 60.0, 60.25), (-2, 0, 0.25)]
)
def test_throttle_honours_retry_after_within_the_cap(retry_after_s: float, low: float, high: float) -> None:
    error = E.RateLimited("429", provider="p", retry_after_s=retry_after_s)
    assert low <= throttle_delay_s(error, 0, base_s=1.0, cap_s=60.0, max_retry_after_s=300.0) <= high


def test_a_retry_after_of_a_day_is_honoured_for_max_retry_after_s_only() -> None:
    error = E.RateLimited("429", provider="p", retry_after_s=86400.0)
    assert 300.0 <= throttle_delay_s(error, 0, base_s=1.0, cap_s=3600.0, max_retry_after_s=300.0) <= 300.25


def test_throttle_without_retry_after_backs_off() -> None:
    error = E.ConcurrencyLimited("429", provider="p")
    assert 4.0 <= throttle_delay_s(error, 2, base_s=2.0, cap_s=60.0, max_retry_after_s=300.0) <= 8.0
