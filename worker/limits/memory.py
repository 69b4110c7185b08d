"""The limiter in one process's memory, with the Redis limiter's semantics: for unit tests (and the same
contract tests run against both). ``queues`` receives the messages of woken waiters."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.limits.base import BudgetState, RateTurn, Turn, Waiter
from worker.limits.budgets import Pool, RateBudget

_EARLY_S = 0.020


@dataclass
class _Rate:
    tat: float = 0.0
    paused: float = 0.0
    reserved: dict[str, float] = field(default_factory=dict)
    log: list[float] = field(default_factory=list)  # when calls went, oldest first


@dataclass
class _Pool:
    leases: dict[str, float] = field(default_factory=dict)
    waiting: dict[str, Waiter] = field(default_factory=dict)
    last_tenant: str | None = None
    paused: float = 0.0


class MemoryLimiter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rates: dict[str, _Rate] = defaultdict(_Rate)
        self._pools: dict[str, _Pool] = defaultdict(_Pool)
        self.queues: dict[str, list[str]] = defaultdict(list)

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def take_turn(
        self, budget: RateBudget, holder: str, *, horizon_s: float, now: float | None = None
    ) -> RateTurn:
        with self._lock:
            t, r = self._now(now), self._rates[budget.name]
            window = budget.period_s + budget.guard_s
            r.log = [s for s in r.log if s > t - window]

            def admit() -> bool:
                if t < r.paused or len(r.log) >= budget.limit:
                    return False
                r.log.append(t)
                return True

            slot = r.reserved.pop(holder, None)
            if slot is not None:
                if t + _EARLY_S < slot:
                    r.reserved[holder] = slot
                    return RateTurn(Turn.WAIT, slot - t)
                if admit():
                    return RateTurn(Turn.GO)
            r.reserved = {h: s for h, s in r.reserved.items() if s >= t - 60}
            earliest = max(t, r.paused)
            if len(r.log) >= budget.limit:
                earliest = max(earliest, r.log[0] + window)
            tat = max(r.tat, earliest)
            if tat - t > horizon_s:
                return RateTurn(Turn.FULL, tat - t - horizon_s)
            r.tat = tat + budget.interval_s
            if tat - t <= _EARLY_S and admit():
                return RateTurn(Turn.GO)
            r.reserved[holder] = tat
            return RateTurn(Turn.WAIT, max(tat - t, 0.001))

    def _wake(self, pool: Pool, p: _Pool, t: float) -> int:
        p.leases = {h: e for h, e in p.leases.items() if e > t}
        if p.paused > t:
            return 0
        woken = 0
        while len(p.leases) < pool.size and p.waiting:
            tenants = sorted({w.tenant for w in p.waiting.values()})
            after = [x for x in tenants if p.last_tenant is not None and x > p.last_tenant]
            tenant = (after or tenants)[0]
            p.last_tenant = tenant
            head = min(
                (w for w in p.waiting.values() if w.tenant == tenant), key=lambda w: (w.order, w.holder)
            )
            del p.waiting[head.holder]
            p.leases[head.holder] = t + pool.lease_ttl_s
            self.queues[head.queue].append(head.message)
            woken += 1
        return woken

    def acquire(self, pool: Pool, waiter: Waiter, *, now: float | None = None) -> bool:
        with self._lock:
            t, p = self._now(now), self._pools[pool.name]
            self._wake(pool, p, t)
            paused = p.paused > t
            if waiter.holder in p.leases and not paused:
                p.leases[waiter.holder] = t + pool.lease_ttl_s
                p.waiting.pop(waiter.holder, None)
                return True
            p.leases.pop(waiter.holder, None)
            if not paused and len(p.leases) < pool.size and not p.waiting:
                p.leases[waiter.holder] = t + pool.lease_ttl_s
                return True
            p.waiting[waiter.holder] = waiter
            return False

    def renew(self, pool: Pool, holder: str, *, ttl_s: float | None = None, now: float | None = None) -> None:
        with self._lock:
            self._pools[pool.name].leases[holder] = self._now(now) + (ttl_s or pool.lease_ttl_s)

    def release(self, pool: Pool, holder: str, *, now: float | None = None) -> int:
        with self._lock:
            p = self._pools[pool.name]
            p.leases.pop(holder, None)
            p.waiting.pop(holder, None)
            return self._wake(pool, p, self._now(now))

    def pause(self, budget: RateBudget | Pool, for_s: float, *, now: float | None = None) -> None:
        with self._lock:
            until = self._now(now) + for_s
            if isinstance(budget, Pool):
                p = self._pools[budget.name]
                p.paused = max(p.paused, until)
            else:
                r = self._rates[budget.name]
                r.paused, r.tat = max(r.paused, until), max(r.tat, until)

    def sweep(self, pool: Pool, *, now: float | None = None) -> int:
        with self._lock:
            return self._wake(pool, self._pools[pool.name], self._now(now))

    def state(self, budget: RateBudget | Pool, *, now: float | None = None) -> BudgetState:
        with self._lock:
            t = self._now(now)
            if isinstance(budget, Pool):
                p = self._pools[budget.name]
                live = sum(1 for e in p.leases.values() if e > t)
                paused = p.paused if p.paused > t else None
                return BudgetState(budget.name, "pool", budget.size, live, len(p.waiting), paused)
            r = self._rates[budget.name]
            sent = sum(1 for s in r.log if s > t - budget.period_s)
            reserved = sum(1 for s in r.reserved.values() if s >= t)
            return BudgetState(
                budget.name, "rate", budget.limit, sent, reserved, r.paused if r.paused > t else None
            )
