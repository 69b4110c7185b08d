"""Aimi Sync in the provider registry: the ``music`` job's provider."""

from __future__ import annotations

from worker.limits.budgets import Pool, RateBudget
from worker.providers.aimi.client import AimiClient
from worker.providers.aimi.settings import AimiSettings
from worker.providers.spec import ProviderSpec

REQUESTS = "aimi.requests"  # every API call (genq's own budget: none is documented)
EXECUTIONS = "aimi.executions"  # executions pending or processing (Aimi: 10 per user)


def budgets(settings: AimiSettings, lease_ttl_s: float) -> tuple[RateBudget | Pool, ...]:
    return RateBudget.of(REQUESTS, settings.rate), Pool(EXECUTIONS, settings.concurrency or 10, lease_ttl_s)


SPEC = ProviderSpec(
    name="aimi",
    title="Aimi Sync",
    settings=AimiSettings,
    budgets=budgets,
    client=AimiClient.from_settings,
    stages="worker.providers.aimi.stages",
    graphs="worker.providers.aimi.graph:GRAPHS",
    cost="worker.providers.aimi.stages:job_cost",
    watchers=("worker.providers.aimi.watch:watcher",),
)
