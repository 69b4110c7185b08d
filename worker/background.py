"""A worker bootstep that runs genq's background loops in threads of the worker's main process: the
schedule's mover and the heartbeat (every worker), the status sweeps (a thread per account; only the
holder of each account's lease sends requests), the reconciler (only the holder of its lease) and the
output store's retention (a lifecycle rule put once, or a sweep by one worker at a time). None
holds anything of a job: they work on what Redis holds. It also starts the main process's metrics
flusher (pool processes start their own, worker/metrics.py)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

from worker.context import Context, plans, watchers
from worker.heartbeat import Heartbeat
from worker.metrics import start_flushing, stop_flushing
from worker.reconcile import Reconciler
from worker.retention import OutputRetention
from worker.schedule import Mover
from worker.settings import get_settings
from worker.sweep import Sweeper

log = logging.getLogger(__name__)

Loop = Mover | Sweeper | Heartbeat | Reconciler | OutputRetention


class Background(bootsteps.StartStopStep):
    # After the pool: prefork children must not be forked while these threads hold locks.
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.loops: list[Loop] = []
        self.threads: list[threading.Thread] = []

    def start(self, worker: Any) -> None:
        # A context of their own: the threads' Redis and HTTP clients are not the pool's.
        ctx = Context(get_settings())
        waits, runs = ctx.settings.waits, ctx.settings.runs
        queues = sorted(worker.app.amqp.queues)
        sweeps = watchers(ctx)
        plan_of = plans(ctx)
        self.loops = [
            Mover(ctx.redis, queues, max_sleep_s=waits.mover_max_sleep_s),
            *(
                Sweeper(
                    ctx.redis,
                    ctx.limiter,
                    watcher,
                    lease_s=waits.sweep_lease_s,
                    horizon_s=ctx.settings.limits.horizon_s,
                    pause_s=ctx.settings.limits.pause_s,
                    max_pause_s=ctx.settings.limits.max_retry_after_s,
                    plan=plan_of.get(watcher.provider),
                )
                for watcher in sweeps
            ),
            Heartbeat(ctx.redis, worker.app, every_s=runs.heartbeat_s, lease_s=ctx.settings.run_lease_s),
            Reconciler.of(ctx, queues),
            OutputRetention(ctx.redis, ctx.outputs, every_s=ctx.settings.outputs.sweep_every_s),
        ]
        self.threads = [
            threading.Thread(target=keep_running, args=(loop,), name=f"genq-{_name(loop)}", daemon=True)
            for loop in self.loops
        ]
        for thread in self.threads:
            thread.start()
        start_flushing(ctx.redis)

    def stop(self, worker: Any) -> None:
        for loop in self.loops:
            loop.stop()
        for thread in self.threads:
            thread.join(timeout=5)
        stop_flushing()  # and again at worker shutdown, for the pool's last runs


def keep_running(loop: Loop, restart_s: float = 1.0) -> None:
    """Runs a loop until it is stopped. A bug that escapes it (anything but Redis being away, which each
    loop waits out itself) is logged and the loop starts again after ``restart_s``: a mover or a sweep
    that ended would leave every job it moves or checks parked, with the worker still consuming."""
    while True:
        try:
            loop.run()
            return
        except Exception:
            log.exception("%s failed; starting it again in %.1f s", _name(loop), restart_s)
        if loop.stopped.wait(restart_s):
            return


def _name(loop: Loop) -> str:
    kind = type(loop).__name__.lower()
    return f"{kind}-{loop.watcher.provider}" if isinstance(loop, Sweeper) else kind
