"""Retry decisions as small pure functions (table-tested in tests/unit/test_retry.py)."""

from __future__ import annotations

import random

from worker.providers.errors import Throttled


def backoff_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half the step fixed, half random, capped at ``cap_s``.

    attempt 0 waits between base/2 and base, attempt n between step/2 and step with step = base * 2**n.
    """
    step = min(cap_s, base_s * 2.0 ** max(0, attempt))
    return step / 2 + (rng or random).uniform(0, step / 2)


def throttle_delay_s(
    error: Throttled, attempt: int, *, base_s: float, cap_s: float, max_retry_after_s: float
) -> float:
    """How long a throttled call waits: the provider's Retry-After when it gave one (at most
    ``max_retry_after_s`` and ``cap_s``), else backoff."""
    if error.retry_after_s is not None:
        return min(cap_s, max_retry_after_s, max(0.0, error.retry_after_s)) + random.uniform(0, 0.25)
    return backoff_s(attempt, base_s=base_s, cap_s=cap_s)
