"""Request-admission bookkeeping shared by the simulators: sliding-window rate limits, idempotency keys."""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass


class SlidingWindow:
    """Sliding-window log limiter: at most `limit` admitted hits per key within any `window_s` span.

    Refused attempts are not recorded, so a client that keeps retrying while throttled does not extend
    its own penalty. Memory is O(limit) per key.
    """

    def __init__(self) -> None:
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)

    def acquire(self, key: str, limit: int, window_s: float, now: float) -> float | None:
        """Record a hit and return None, or return the seconds until a slot frees (nothing recorded)."""
        hits = self._hits[key]
        while hits and hits[0] <= now - window_s:
            hits.popleft()
        if len(hits) < limit:
            hits.append(now)
            return None
        # After a runtime limit decrease more than `limit` hits may be held: wait for enough to expire.
        return hits[len(hits) - limit] + window_s - now

    def clear(self) -> None:
        self._hits.clear()


def retry_after_header(wait_s: float) -> str:
    """`Retry-After` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_s)))


@dataclass(frozen=True)
class IdempotencyRecord:
    fingerprint: str
    resource_id: str
    stored_at: float


class IdempotencyStore:
    """Idempotency keys of created resources, each remembered for `retention_s` after it was stored."""

    def __init__(self) -> None:
        self._records: dict[str, IdempotencyRecord] = {}

    def lookup(self, key: str, now: float, retention_s: float) -> IdempotencyRecord | None:
        record = self._records.get(key)
        if record is not None and now - record.stored_at >= retention_s:
            del self._records[key]
            return None
        return record

    def store(self, key: str, fingerprint: str, resource_id: str, now: float) -> None:
        self._records[key] = IdempotencyRecord(fingerprint, resource_id, now)

    def clear(self) -> None:
        self._records.clear()
