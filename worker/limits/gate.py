"""What one stage run may spend: the budgets of its provider calls, for one job.

A stage asks the gate before it acts; when a budget is spent the gate raises instead, and the stage's
lifecycle (worker/stage.py) turns that into waiting outside the worker:
- ``Parked``: the pool is full; the stage's message waits in the limiter, which re-runs it with the slot
  already granted when one frees. Nothing is re-queued meanwhile and no retry is spent.
- ``Later``: the stage's turn on a rate budget is reserved in ``countdown_s``; it re-runs then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from schemas import JobRecord, StageStatus
from worker.limits.base import Limiter, Turn, Waiter
from worker.limits.budgets import LimitsSettings, Pool, RateBudget
from worker.outcomes import Later
from worker.providers.errors import ConcurrencyLimited, RateLimited


class Parked(Exception):
    """The stage waits in the limiter for a slot of ``pool``; it will be re-run with the slot granted."""

    def __init__(self, pool: str) -> None:
        super().__init__(f"waiting for a {pool} slot")
        self.pool = pool


class Gate:
    def __init__(
        self,
        limiter: Limiter,
        settings: LimitsSettings,
        job: JobRecord,
        rerun: Callable[[], tuple[str, str]],
        *,
        holder: str | None = None,
    ) -> None:
        self.limiter = limiter
        self.settings = settings
        self.job = job
        self._rerun = rerun
        # Who holds slots and turns: the job, or one parallel branch of it (e.g. its third execution),
        # so that a job can hold several slots of one pool.
        self.holder = holder or job.id

    def hold(self, pool: Pool) -> None:
        """Hold a slot of ``pool`` for this job (taking one, or keeping the one it has), or park."""
        queue, message = self._rerun()
        waiter = Waiter(self.holder, self.job.tenant or "", self.job.created_at.timestamp(), queue, message)
        if not self.limiter.acquire(pool, waiter):
            raise Parked(pool.name)

    def keep(self, pool: Pool, *, for_s: float = 0.0) -> None:
        """Renew this job's lease, for at least ``for_s`` beyond the usual time to live."""
        self.limiter.renew(pool, self.holder, ttl_s=self.settings.lease_ttl_s + for_s)

    def let_go(self, pool: Pool) -> None:
        self.limiter.release(pool, self.holder)

    def turn(self, rate: RateBudget) -> None:
        """Spend a turn of ``rate`` now, or raise ``Later`` for when this job's turn comes."""
        turn = self.limiter.take_turn(rate, self.holder, horizon_s=self.settings.horizon_s)
        if turn.turn is not Turn.GO:
            detail = (
                f"{rate.name}: turn in {turn.wait_s:.2f} s" if turn.turn is Turn.WAIT else f"{rate.name} full"
            )
            raise Later(turn.wait_s, detail, status=StageStatus.THROTTLED)

    @contextmanager
    def calling(self, rate: RateBudget, pool: Pool | None = None) -> Iterator[None]:
        """One provider call under ``rate`` (and, for a create, ``pool``). A provider's 429 pauses the
        budget it names for every worker (for its Retry-After, at most ``max_retry_after_s``), and this
        stage waits its turn again. A source's answer (``SourceError``, never ``Throttled``) passes
        through: it is its own job's, not the provider's."""
        self.turn(rate)
        try:
            yield
        except ConcurrencyLimited as exc:
            pause_s = self.settings.pause_for(exc.retry_after_s)
            if pool is None:
                raise Later(pause_s, str(exc), status=StageStatus.THROTTLED) from exc
            self.limiter.pause(pool, pause_s)
            self.limiter.release(pool, self.holder)
            self.hold(pool)  # parks: the pool is paused
            raise Later(pause_s, str(exc), status=StageStatus.THROTTLED) from exc
        except RateLimited as exc:
            pause_s = self.settings.pause_for(exc.retry_after_s)
            self.limiter.pause(rate, pause_s)
            self.turn(rate)  # a turn after the pause
            raise Later(pause_s, str(exc), status=StageStatus.THROTTLED) from exc
