"""What the workers count for ``genq metrics``: how long stage runs take (per provider, stage and outcome)
and the HTTP responses provider clients get (per provider, status and error code); and the send time
every task message carries (``schemas.wire.SENT_AT_HEADER``), from which the age of a queue's oldest
message follows. Job outcomes are counted by ``TRANSITION_LUA`` itself, in Redis.

Recording is an add to this process's ``Buffer`` under a lock (about a microsecond), so no stage run or
provider call waits for Redis; a ``Flusher`` thread per process adds what was recorded to the Redis
hashes of ``schemas.layout`` (``METRICS_*``) every second, in one round trip, and once more when the
process stops. Weak spots: a process that is killed loses at most its last second of counts; counts
recorded while Redis is unreachable wait in the buffer for the next flush that works.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import redis
from celery import Task, signals, states
from celery.utils.dispatch import Signal

from schemas import layout as L
from schemas.wire import SENT_AT_HEADER

if TYPE_CHECKING:  # worker.settings imports the providers, whose HTTP clients import this module
    from worker.settings import Settings

log = logging.getLogger(__name__)

# Stage runs last from milliseconds (a skip, a park) to minutes (a large download or upload).
BUCKETS_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
INF: Final = "+Inf"
OUTCOMES: Final = ("done", "failed", "parked", "waiting", "later", "retry", "skipped")
FLUSH_INTERVAL_S: Final = 1.0
TASK_PREFIX: Final = "genq."
_LE: Final = tuple(f"{bound:g}" for bound in BUCKETS_S)
# Error codes come from provider bodies: capped, so a strange body cannot grow the label set much.
_MAX_CODE_CHARS: Final = 64
# How a successful run's result (worker.stage.Stage.perform, genq.start) begins, by outcome. A cancelled
# job's "stopped" counts as skipped; any other result as done.
_RESULT_OUTCOMES: Final = (
    ("done", "done"),
    ("started", "done"),
    ("skipped", "skipped"),
    ("stopped", "skipped"),
    ("parked", "parked"),
    ("waiting", "waiting"),
    ("again in", "later"),
    ("failed", "failed"),
)


def bucket(duration_s: float) -> str:
    """The ``le`` of the histogram bucket ``duration_s`` falls in (at most le, above the one below)."""
    index = bisect_left(BUCKETS_S, duration_s)
    return _LE[index] if index < len(_LE) else INF


def outcome(state: str, retval: object) -> str:
    """What a stage run did, from the Celery state it ended in and its result (or exception)."""
    if state == states.SUCCESS:
        result = retval if isinstance(retval, str) else ""
        return next((name for prefix, name in _RESULT_OUTCOMES if result.startswith(prefix)), "done")
    if state == states.RETRY:
        return "retry"
    if state == states.IGNORED:
        # ``Task.replace`` ends a run that handed its work on to a canvas (aimi upload_init) this way.
        return "done" if str(retval).startswith("Replaced") else "skipped"
    if state == states.REJECTED:  # requeued (genq.start while Redis is unreachable) or dropped
        return "retry" if getattr(retval, "requeue", False) else "failed"
    return "failed"


def stage_labels(task_name: str, stage: str) -> tuple[str, str]:
    """(provider, stage) of a genq task: ``genq.<provider>.<...>`` with its Stage's ``stage`` name, and
    ``genq.start`` as provider ``genq``, stage ``start``."""
    parts = task_name.split(".")
    if len(parts) > 2:
        return parts[1], stage or ".".join(parts[2:])
    return "genq", stage or parts[-1]


class Buffer:
    """Counts recorded in this process and not yet in Redis: (hash key, field) -> amount."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything, lock included (a forked child must not inherit its parent's counts, nor a
        lock another thread of the parent held)."""
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._sums: dict[tuple[str, str], float] = {}

    def stage_run(self, provider: str, stage: str, outcome: str, duration_s: float) -> None:
        series = L.METRICS_SEP.join((provider, stage, outcome, ""))
        count_key = (L.METRICS_STAGES_KEY, series + bucket(duration_s))
        sum_key = (L.METRICS_STAGES_KEY, series + "sum")
        with self._lock:
            self._counts[count_key] = self._counts.get(count_key, 0) + 1
            self._sums[sum_key] = self._sums.get(sum_key, 0.0) + duration_s

    def response(self, provider: str, status: int, code: str) -> None:
        code = code[:_MAX_CODE_CHARS].replace(L.METRICS_SEP, "_")
        key = (L.METRICS_RESPONSES_KEY, L.METRICS_SEP.join((provider, str(status), code)))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def pending(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], float]]:
        """Copies of what is waiting to be flushed: counts and sums."""
        with self._lock:
            return dict(self._counts), dict(self._sums)

    def flush(self, client: redis.Redis) -> int:
        """Add what was recorded to Redis in one transaction; return how many fields changed. On a Redis
        error the counts go back into the buffer and the error is raised."""
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = {}, {}
        if not counts and not sums:
            return 0
        try:
            with client.pipeline(transaction=True) as pipe:
                for (key, field), amount in counts.items():
                    pipe.hincrby(key, field, amount)
                for (key, field), total in sums.items():
                    pipe.hincrbyfloat(key, field, total)
                pipe.execute()
        except redis.RedisError:
            with self._lock:
                for count_key, amount in counts.items():
                    self._counts[count_key] = self._counts.get(count_key, 0) + amount
                for sum_key, total in sums.items():
                    self._sums[sum_key] = self._sums.get(sum_key, 0.0) + total
            raise
        return len(counts) + len(sums)


# This process's counts. Module-level so that every httpx client and task of the process shares one
# without being handed it; a forked pool process starts with an empty one (see _after_fork).
BUFFER = Buffer()


def record_response(provider: str, status: int, code: str) -> None:
    """Count one HTTP response a provider client received (called by its httpx response hook)."""
    BUFFER.response(provider, status, code)


def record_stage_run(task_name: str, stage: str, state: str, retval: object, duration_s: float) -> None:
    """Count one run of a genq task: its duration, by provider, stage and outcome."""
    provider, stage = stage_labels(task_name, stage)
    BUFFER.stage_run(provider, stage, outcome(state, retval), duration_s)


class Flusher:
    """Adds this process's counts to Redis every ``interval_s`` in a daemon thread; ``stop`` ends the thread
    and adds what is left (it may be called again, and flushes again)."""

    def __init__(
        self, client: redis.Redis, *, interval_s: float = FLUSH_INTERVAL_S, buffer: Buffer = BUFFER
    ) -> None:
        self.redis = client
        self.interval_s = interval_s
        self.buffer = buffer
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genq-metrics", daemon=True)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()

    def flush(self) -> int:
        try:
            return self.buffer.flush(self.redis)
        except redis.RedisError as exc:
            log.warning("metrics not flushed (kept for the next flush): %s", exc)
            return 0

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.flush()


# One flusher per process, by pid: a forked child never uses its parent's. Started from one thread only
# (the bootstep, or a pool process's init), so no lock that a fork could catch held.
_flushers: dict[int, Flusher] = {}
# Task id -> when its run started (perf_counter), between task_prerun and task_postrun.
_started: dict[str, float] = {}


def start_flushing(client: redis.Redis) -> Flusher:
    """Start this process's flusher (once; later calls return it, until it is stopped)."""
    flusher = _flushers.get(os.getpid())
    if flusher is None or flusher.stopped:
        flusher = _flushers[os.getpid()] = Flusher(client)
        flusher.start()
    return flusher


def stop_flushing(**_: Any) -> None:
    """Stop this process's flusher, if it has one, and flush what is left."""
    flusher = _flushers.get(os.getpid())
    if flusher is not None:
        flusher.stop()


def _start_child_flusher(settings: Settings, **_: Any) -> None:
    from worker.settings import redis_client  # noqa: PLC0415 (see the import of Settings)

    start_flushing(redis_client(settings))


def _stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # Overwritten, never kept: a re-run's headers are copied from the run before it (its request's).
    if headers is not None:
        headers[SENT_AT_HEADER] = time.time()


def _run_started(task_id: str, task: Task, **_: Any) -> None:  # type: ignore[type-arg]
    if task.name.startswith(TASK_PREFIX):
        _started[task_id] = time.perf_counter()


def _run_ended(task_id: str, task: Task, retval: object = None, state: str = "", **_: Any) -> None:  # type: ignore[type-arg]
    started = _started.pop(task_id, None)
    if started is not None:
        duration_s = time.perf_counter() - started
        record_stage_run(task.name, getattr(task, "stage", ""), state, retval, duration_s)


def _after_fork() -> None:
    BUFFER.reset()
    _started.clear()


os.register_at_fork(after_in_child=_after_fork)


def install(settings: Settings) -> None:
    """Connect the Celery hooks: stamp each published message's send time, time every genq task run,
    and run a flusher in each pool process (the worker's main process starts its own in the Background
    bootstep), flushed at the process's end and, in the main process, at worker shutdown, after the pool
    has finished its last runs. Connecting again changes nothing."""
    hooks: dict[str, tuple[Signal, Callable[..., None]]] = {
        "sent_at": (signals.before_task_publish, _stamp_sent_at),
        "run_started": (signals.task_prerun, _run_started),
        "run_ended": (signals.task_postrun, _run_ended),
        "process_init": (signals.worker_process_init, partial(_start_child_flusher, settings)),
        "process_shutdown": (signals.worker_process_shutdown, stop_flushing),
        "worker_shutdown": (signals.worker_shutdown, stop_flushing),
    }
    for name, (signal, receiver) in hooks.items():
        signal.connect(receiver, weak=False, dispatch_uid=f"genq.metrics.{name}")
