"""What a worker process talks to: settings, the job store, the limiter, provider clients. Built lazily,
once per process (after Celery forks its pool), so no connection is shared across processes.

Also what the registry's providers amount to for given settings (their budgets, their status sweeps):
here rather than in the registry, which the settings import."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any, TypeVar

import redis

from worker.limits import Budgets, Limiter, RedisLimiter, Unlimited
from worker.providers.registry import specs
from worker.providers.spec import ProviderSpec, load
from worker.schedule import Schedule
from worker.sections import ProviderSettings
from worker.settings import Settings, get_settings, redis_client
from worker.store import JobStore
from worker.sweep import Watcher
from worker.waits import Waits

S = TypeVar("S", bound=ProviderSettings)
C = TypeVar("C")


@dataclass
class Context:
    settings: Settings
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings)

    @cached_property
    def store(self) -> JobStore:
        return JobStore(self.redis)

    @cached_property
    def schedule(self) -> Schedule:
        return Schedule(self.redis)

    @cached_property
    def waits(self) -> Waits:
        return Waits(self.redis)

    @cached_property
    def limiter(self) -> Limiter:
        return RedisLimiter(self.redis) if self.settings.limits.enabled else Unlimited()

    @cached_property
    def budgets(self) -> Budgets:
        """Every provider's budgets (a stage spends its own provider's)."""
        return budgets_from(self.settings)

    @cached_property
    def budgets_in_use(self) -> Budgets:
        """The budgets of the providers whose credentials are set: the ones swept and reported."""
        return budgets_from(self.settings, configured_only=True)

    def section(self, spec: ProviderSpec[S, Any]) -> S:
        return spec.section(self.settings)

    def client(self, spec: ProviderSpec[Any, C]) -> C:
        """The provider's API client, built on first use (one per process; clients are thread-safe)."""
        with self._lock:
            if spec.name not in self._clients:
                self._clients[spec.name] = spec.client(spec.section(self.settings), self.redis)
            client: C = self._clients[spec.name]
            return client


def budgets_from(settings: Settings, *, configured_only: bool = False) -> Budgets:
    """Every provider's declared budgets (with ``configured_only``: of the providers in use)."""
    ttl = settings.limits.lease_ttl_s
    return Budgets(
        {
            spec.name: spec.budgets(spec.section(settings), ttl)
            for spec in specs(settings, configured_only=configured_only)
        }
    )


def watchers(ctx: Context) -> list[Watcher]:
    """The status sweeps of the providers in use (one per account)."""
    found = []
    for spec in specs(ctx.settings, configured_only=True):
        for path in spec.watchers:
            build: Callable[[Context], Watcher] = load(path)
            found.append(build(ctx))
    return found


@cache
def get_context() -> Context:
    return Context(get_settings())
