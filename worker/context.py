"""What a worker process talks to: settings, the job store, the limiter, provider clients. Built lazily,
once per process (after Celery forks its pool), so no connection is shared across processes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any, TypeVar

import redis

from worker.limits import Budgets, Limiter, RedisLimiter, Unlimited
from worker.providers.registry import budgets_from
from worker.providers.spec import ProviderSpec
from worker.schedule import Schedule
from worker.sections import ProviderSettings
from worker.settings import Settings, get_settings
from worker.store import JobStore
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
        return redis.Redis.from_url(self.settings.redis_url)

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


@cache
def get_context() -> Context:
    return Context(get_settings())
