"""The limiter over Redis: each operation is one Lua script, so it is atomic for every worker and host,
and reads the Redis server's clock, so hosts' clocks need not agree. Key layout: ``schemas.layout``.
Tenant keys are built inside the scripts, so this needs one Redis, not a cluster."""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis

from schemas import layout as L
from worker.limits.base import BudgetState, RateTurn, Turn, Waiter
from worker.limits.budgets import Pool, RateBudget

_LUA = resources.files("worker.limits") / "lua"


def _lua(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text()


def _scripts() -> dict[str, str]:
    """Every script with the parts it builds on: the clock, and for pools the shared functions."""
    clock, pool = _lua("clock"), _lua("pool")
    rates = {name: clock + _lua(name) for name in ("rate_turn", "rate_pause", "rate_state")}
    pools = {
        name: clock + pool + _lua(name)
        for name in ("pool_acquire", "pool_renew", "pool_release", "pool_pause", "pool_sweep", "pool_state")
    }
    return rates | pools


def _ms(now: float | None) -> float:
    return -1.0 if now is None else now * 1000.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLimiter:
    """``Limiter`` over one Redis (the broker's, or any other every worker reaches)."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts = {name: client.register_script(source) for name, source in _scripts().items()}

    def _pool(
        self, script: str, pool: Pool, now: float | None, *extra: Any, ttl_s: float | None = None
    ) -> Any:
        ttl_ms = (ttl_s if ttl_s is not None else pool.lease_ttl_s) * 1000.0
        args: list[str | float] = [_ms(now), pool.size, ttl_ms, *extra]
        return self._scripts[script](keys=[L.POOL_KEY.format(name=pool.name)], args=args)

    def take_turn(
        self, budget: RateBudget, holder: str, *, horizon_s: float, now: float | None = None
    ) -> RateTurn:
        window_ms = (budget.period_s + budget.guard_s) * 1000.0
        args: list[str | float] = [
            _ms(now), budget.interval_s * 1000.0, horizon_s * 1000.0, window_ms, budget.limit, holder
        ]  # fmt: skip
        turn, wait_ms = self._scripts["rate_turn"](keys=[L.RATE_KEY.format(name=budget.name)], args=args)
        return RateTurn(Turn(_text(turn)), float(_text(wait_ms)) / 1000.0)

    def acquire(self, pool: Pool, waiter: Waiter, *, now: float | None = None) -> bool:
        extra = (waiter.holder, waiter.tenant, waiter.order, waiter.queue, waiter.message)
        return bool(self._pool("pool_acquire", pool, now, *extra))

    def renew(self, pool: Pool, holder: str, *, ttl_s: float | None = None, now: float | None = None) -> None:
        self._pool("pool_renew", pool, now, holder, ttl_s=ttl_s)

    def release(self, pool: Pool, holder: str, *, now: float | None = None) -> int:
        return int(self._pool("pool_release", pool, now, holder))

    def pause(self, budget: RateBudget | Pool, for_s: float, *, now: float | None = None) -> None:
        if isinstance(budget, Pool):
            self._pool("pool_pause", budget, now, for_s * 1000.0)
        else:
            self._scripts["rate_pause"](
                keys=[L.RATE_KEY.format(name=budget.name)], args=[_ms(now), for_s * 1000.0]
            )

    def sweep(self, pool: Pool, *, now: float | None = None) -> int:
        return int(self._pool("pool_sweep", pool, now))

    def state(self, budget: RateBudget | Pool, *, now: float | None = None) -> BudgetState:
        if isinstance(budget, Pool):
            leases, waiting, paused = self._pool("pool_state", budget, now)
            until = float(_text(paused)) / 1000.0
            return BudgetState(budget.name, "pool", budget.size, int(leases), int(waiting), until or None)
        sent, reserved, paused, server_now = self._scripts["rate_state"](
            keys=[L.RATE_KEY.format(name=budget.name)], args=[_ms(now), budget.period_s * 1000.0]
        )
        paused_s, now_s = float(_text(paused)) / 1000, float(_text(server_now)) / 1000
        return BudgetState(
            budget.name,
            "rate",
            budget.limit,
            int(sent),
            int(reserved),
            paused_s if paused_s > now_s else None,
        )
