"""The Redis-side schedule: stage runs that are due later (budget re-runs, retry backoff) wait in Redis,
not in a worker. Celery's countdowns would keep each message in a worker's memory until its ETA, and a
message held longer than ``visibility_timeout`` would be handed to a second worker.

One sorted set per queue holds run keys by due time (the Redis server's clock), a hash beside it the
messages. Every worker runs a mover (``Mover``) that pushes what is due onto its queue in one Lua step,
pushing only what its own ``ZREM`` removed, so with any number of movers an entry is pushed once, and
an entry outlives any worker that dies (as in Bull's delayed set). The mover sleeps until the next due
time or until a newly scheduled entry becomes the earliest (announced on a pub/sub channel).
Weak spots: a due entry waits for the next mover wake-up, at most ``max_sleep_s`` when an announcement
is missed (it happens: with movers capped at 1 s, four workers lost 1-2 % of a create budget to late
re-runs, hence 0.1 s); an entry is as durable as Redis's AOF makes it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from schemas import layout as L
from worker.lua import source

log = logging.getLogger(__name__)

MOVE_BATCH = 500
RETRY_S = 1.0  # after a Redis error


@dataclass(frozen=True)
class ScheduleState:
    queue: str
    scheduled: int
    next_due_s: float | None  # seconds from now until the earliest entry is due


class Schedule:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._add = client.register_script(source("schedule_add"))
        self._move = client.register_script(source("schedule_move"))

    def add(self, run_key: str, queue: str, message: str, delay_s: float) -> None:
        """Push ``message`` onto ``queue`` in ``delay_s``. A run key scheduled again replaces its entry."""
        key = L.SCHEDULE_KEY.format(queue=queue)
        delay_ms = max(0, round(delay_s * 1000))
        self._add(keys=[key, key + ":items"], args=[run_key, delay_ms, queue, message, L.SCHEDULE_CHANNEL])

    def move(self, queues: Sequence[str], limit: int = MOVE_BATCH) -> tuple[int, float | None]:
        """Push up to ``limit`` due entries; return how many, and seconds until the next is due."""
        keys = [L.SCHEDULE_KEY.format(queue=q) for q in queues]
        moved, next_ms = self._move(keys=keys, args=[limit])
        return int(moved), (None if int(next_ms) < 0 else int(next_ms) / 1000.0)

    def state(self, queue: str) -> ScheduleState:
        return ScheduleState(queue, *due_set(self.redis, L.SCHEDULE_KEY.format(queue=queue)))


def due_set(client: redis.Redis, key: str) -> tuple[int, float | None]:
    """Size of a sorted set scored by due time (ms), and seconds until its earliest entry is due."""
    with client.pipeline(transaction=False) as pipe:
        pipe.zcard(key)
        pipe.zrange(key, 0, 0, withscores=True)
        pipe.time()
        count, head, (sec, usec) = pipe.execute()
    return int(count), (max(0.0, head[0][1] / 1000.0 - (sec + usec / 1e6)) if head else None)


class Mover:
    """Moves due entries of ``queues`` until stopped; run in a thread of every worker."""

    def __init__(self, client: redis.Redis, queues: Sequence[str], *, max_sleep_s: float = 0.1) -> None:
        self.redis = client
        self.schedule = Schedule(client)
        self.queues = list(queues)
        self.max_sleep_s = max_sleep_s
        self.stopped = threading.Event()
        self.moved = 0

    def run(self) -> None:
        pubsub: redis.client.PubSub | None = None
        while not self.stopped.is_set():
            try:
                if pubsub is None:
                    pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(L.SCHEDULE_CHANNEL)
                moved, next_s = self.schedule.move(self.queues)
                self.moved += moved
                if moved >= MOVE_BATCH:
                    continue
                sleep_s = self.max_sleep_s if next_s is None else min(next_s, self.max_sleep_s)
                if sleep_s > 0:
                    pubsub.get_message(timeout=sleep_s)
            except redis.RedisError:
                log.warning("schedule mover: Redis unavailable; retrying in %.1f s", RETRY_S)
                _close(pubsub)
                pubsub = None
                self.stopped.wait(RETRY_S)
        _close(pubsub)

    def stop(self) -> None:
        self.stopped.set()


def _close(pubsub: redis.client.PubSub | None) -> None:
    if pubsub is not None:
        with contextlib.suppress(redis.RedisError):
            pubsub.close()
