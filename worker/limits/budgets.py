"""The provider budgets genq enforces, built from settings."""

from __future__ import annotations

from dataclasses import dataclass

from worker.settings import RateBudgetSettings, Settings


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
    syncso_create: RateBudget
    syncso_other: RateBudget
    syncso_generations: Pool
    aimi_executions: Pool
    aistudios_rate: RateBudget | None
    aistudios_renders: Pool | None

    @property
    def rates(self) -> list[RateBudget]:
        return [b for b in (self.syncso_create, self.syncso_other, self.aistudios_rate) if b is not None]

    @property
    def pools(self) -> list[Pool]:
        return [p for p in (self.syncso_generations, self.aimi_executions, self.aistudios_renders) if p]


def budgets_from(settings: Settings) -> Budgets:
    ttl = settings.limits.lease_ttl_s
    aistudios = settings.aistudios
    return Budgets(
        syncso_create=RateBudget.of("syncso.create", settings.syncso.create_rate),
        syncso_other=RateBudget.of("syncso.other", settings.syncso.other_rate),
        syncso_generations=Pool("syncso.generations", settings.syncso.effective_concurrency, ttl),
        aimi_executions=Pool("aimi.executions", settings.aimi.executions, ttl),
        aistudios_rate=RateBudget.of("aistudios.requests", aistudios.rate) if aistudios.rate else None,
        aistudios_renders=Pool("aistudios.renders", aistudios.concurrency, ttl)
        if aistudios.concurrency
        else None,
    )
