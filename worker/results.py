"""The Celery result backend of genq's workers: Redis, minus the pub/sub that waits for results.

Job records hold every outcome, and nothing in genq waits on a task result: chords join through the
backend's counters, which this keeps. Celery's Redis backend would still, in every worker, send an
UNSUBSCRIBE for each result object it garbage-collects (``AsyncResult.__del__``; one per chord member
applied), opening a pub/sub connection for it. Here results are never subscribed to, so there is
nothing to unsubscribe from.
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend


class ResultBackend(RedisBackend):
    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Never subscribe to a sent task's result."""

    def on_result_fulfilled(self, result: Any) -> None:
        """Never unsubscribe: nothing was subscribed."""


# ``Celery(backend=...)`` form that selects this class for a Redis URL.
def backend_url(redis_url: str) -> str:
    return f"{ResultBackend.__module__}:{ResultBackend.__name__}+{redis_url}"
