"""Each worker's heartbeat for the messages it holds: while a worker is alive, neither the run lease of a
stage it runs (``RUN_KEY``) nor the unacknowledged-message entry of a message it took lapses, however
long the stage runs; when it dies, both lapse, and kombu hands its messages to another worker after
``visibility_timeout_s`` (genq's default: 20 s, against kombu's one hour).

kombu keeps each taken message in ``unacked`` and its time in ``unacked_index``, and gives it back to
its queue once that time is older than the visibility timeout. The heartbeat sets that time to now
(``ZADD XX``: a message acknowledged meanwhile is never brought back). It runs in a thread of the
worker's main process, which knows every message the worker took (``celery.worker.state``), whichever
pool runs them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.worker import state

from schemas import layout as L
from worker.lua import source
from worker.stage import Stage, run_holder

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, client: redis.Redis, app: Celery, *, every_s: float, lease_s: float) -> None:
        self.redis = client
        self.app = app
        self.every_s = every_s
        self.lease_s = lease_s
        self.stopped = threading.Event()
        self._renew = client.register_script(source("run_renew"))
        self.beats = 0

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat: Redis unavailable (%s)", exc)
            self.stopped.wait(self.every_s)

    def stop(self) -> None:
        self.stopped.set()

    def beat(self) -> None:
        """Renew what this worker holds: one round trip."""
        held = list(state.reserved_requests) + list(state.active_requests)
        tags = {tag for tag in (_delivery_tag(r) for r in held) if tag}
        runs: list[str | int] = []
        for request in list(state.active_requests):
            runs += self._run_of(request)
        with self.redis.pipeline(transaction=False) as pipe:
            if tags:
                pipe.zadd(L.UNACKED_INDEX, dict.fromkeys(tags, time.time()), xx=True)
            if runs:
                self._renew(args=[round(self.lease_s * 1000), *runs], client=pipe)
            pipe.execute()
        self.beats += 1

    def _run_of(self, request: Any) -> list[str | int]:
        """[lease key, task id, holder] of a genq stage run, or [] for another task."""
        task = self.app.tasks.get(request.name)
        args = request.args or ()
        if not isinstance(task, Stage) or not task.stage or not args or not request.worker_pid:
            return []
        key = L.run_key(str(args[0]), task.run_state(args))
        return [key, request.id, run_holder(request.id, request.worker_pid)]


def _delivery_tag(request: Any) -> str | None:
    message = getattr(request, "message", None)
    tag = getattr(message, "delivery_tag", None)
    return str(tag) if tag else None
