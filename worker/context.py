"""What a worker process talks to: settings, the job store, provider clients. Built lazily, once per
process (after Celery forks its pool), so no connection is shared across processes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import redis

from worker.limits import Budgets, Limiter, RedisLimiter, Unlimited, budgets_from
from worker.providers.syncso.client import SyncSoClient
from worker.schedule import Schedule
from worker.settings import Settings, get_settings
from worker.store import JobStore
from worker.waits import Waits


@dataclass
class Context:
    settings: Settings

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
        return budgets_from(self.settings)

    @cached_property
    def syncso(self) -> SyncSoClient:
        return SyncSoClient.from_settings(self.settings.syncso)


@cache
def get_context() -> Context:
    return Context(get_settings())
