"""The provider budgets genq enforces: rate budgets and concurrency pools, by provider (each provider's
spec declares its own from its settings section), and the ``GENQ_LIMITS__`` section that says how they
are spent. That section lives here, not in ``worker.settings``, so the limits import nothing above them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, Field

from worker.sections import RateBudgetSettings


@dataclass(frozen=True)
class RateBudget:
    """At most ``limit`` calls in any window of ``period_s``."""

    name: str
    limit: int
    period_s: float
    guard_s: float = 0.0

    @property
    def interval_s(self) -> float:
        """Spacing between two calls: the window widened by the guard, shared out evenly."""
        return (self.period_s + self.guard_s) / self.limit

    @classmethod
    def of(cls, name: str, settings: RateBudgetSettings) -> RateBudget:
        return cls(name, settings.limit, settings.period_s, settings.guard_s)


@dataclass(frozen=True)
class Pool:
    """At most ``size`` provider jobs in flight; each holds a lease that lapses ``lease_ttl_s`` after its
    last renewal."""

    name: str
    size: int
    lease_ttl_s: float


@dataclass(frozen=True)
class Budgets:
    """The declared budgets of a set of providers, by provider name."""

    by_provider: Mapping[str, tuple[RateBudget | Pool, ...]]

    def of(self, provider: str) -> tuple[RateBudget | Pool, ...]:
        return self.by_provider.get(provider, ())

    def rate(self, name: str) -> RateBudget:
        found = self._named(name)
        if not isinstance(found, RateBudget):
            raise KeyError(f"no rate budget {name}")
        return found

    def pool(self, name: str) -> Pool:
        found = self._named(name)
        if not isinstance(found, Pool):
            raise KeyError(f"no pool {name}")
        return found

    def pools_of(self, provider: str) -> list[Pool]:
        return [b for b in self.of(provider) if isinstance(b, Pool)]

    @property
    def rates(self) -> list[RateBudget]:
        return [b for budgets in self.by_provider.values() for b in budgets if isinstance(b, RateBudget)]

    @property
    def pools(self) -> list[Pool]:
        return [b for budgets in self.by_provider.values() for b in budgets if isinstance(b, Pool)]

    def _named(self, name: str) -> RateBudget | Pool | None:
        return next((b for budgets in self.by_provider.values() for b in budgets if b.name == name), None)


class LimitsSettings(BaseModel):
    """How genq spends provider budgets across every worker (``GENQ_LIMITS__...``)."""

    enabled: bool = True
    # A lease on a concurrency slot lapses this long after its last renewal (a dead worker's slot comes
    # back then). Renewed at every status check, so it must exceed the longest check interval.
    lease_ttl_s: float = Field(180.0, gt=0)
    # Farthest ahead a rate token is reserved; a stage further back re-queues and asks again then.
    horizon_s: float = Field(30.0, gt=0)
    # A 429 without Retry-After pauses its budget this long.
    pause_s: float = Field(5.0, gt=0)
    # The longest Retry-After genq honours anywhere (a budget's pause, a sweep's, a throttled stage's
    # re-run): a longer one, or an HTTP-date further ahead, counts as this long, so that no answer can
    # stop an account for a day.
    max_retry_after_s: float = Field(300.0, gt=0)
    # A job over its tenant's spend budget with ``over: wait`` asks again this often (or when the next
    # period starts, if sooner): a raised limit lets it through then.
    budget_recheck_s: float = Field(60.0, gt=0)
    # How often each worker reclaims lapsed leases and wakes parked stages.
    sweep_interval_s: float = Field(1.0, gt=0)
    # Celery's own per-worker `rate_limit` per task name (e.g. {"genq.syncso.create": "1/s"}); only for
    # comparison with genq's global budgets (bench/ratelimit.py): it does not hold across workers.
    celery_rate_limits: dict[str, str] = Field(default_factory=dict)

    def pause_for(self, retry_after_s: float | None) -> float:
        """How long a 429 pauses its budget (``pause_for``) with these settings."""
        return pause_for(retry_after_s, pause_s=self.pause_s, most_s=self.max_retry_after_s)


def pause_for(retry_after_s: float | None, *, pause_s: float, most_s: float) -> float:
    """How long a 429 pauses its budget: its Retry-After, else ``pause_s``; never longer than ``most_s``
    (``GENQ_LIMITS__MAX_RETRY_AFTER_S``), whoever sent it."""
    return min(retry_after_s or pause_s, most_s)
