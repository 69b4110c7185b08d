"""A worker bootstep: every sweep interval, reclaim lapsed leases and wake parked stages into free slots.

Releases wake parked stages at once; the sweep covers what no release announces: a lease that lapsed
because its worker died, and the end of a pause. Every worker sweeps; the scripts are atomic, so
sweeps by many workers at once are safe, and each is one short Lua call per pool."""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from worker.context import get_context

log = logging.getLogger(__name__)


def sweep_all() -> int:
    ctx = get_context()
    return sum(ctx.limiter.sweep(pool) for pool in ctx.budgets_in_use.pools)


class LimiterSweep(bootsteps.StartStopStep):
    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        limits = get_context().settings.limits
        if limits.enabled:
            self.tref = worker.timer.call_repeatedly(limits.sweep_interval_s, self._sweep, priority=10)

    def _sweep(self) -> None:
        try:
            woken = sweep_all()
        except Exception:  # a broker hiccup must not stop the timer
            log.exception("limiter sweep failed")
            return
        if woken:
            log.info("limiter sweep woke %d parked stage(s)", woken)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
