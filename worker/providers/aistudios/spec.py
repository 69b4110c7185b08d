"""DeepBrain AI Studios v3 in the provider registry: the ``avatar`` job's provider."""

from __future__ import annotations

from worker.limits.budgets import Pool, RateBudget
from worker.providers.aistudios.client import AIStudiosClient
from worker.providers.aistudios.settings import AIStudiosSettings
from worker.providers.spec import ProviderSpec

REQUESTS = "aistudios.requests"  # every API call but the token request
RENDERS = "aistudios.renders"  # exports in flight


def budgets(settings: AIStudiosSettings, lease_ttl_s: float) -> tuple[RateBudget | Pool, ...]:
    return RateBudget.of(REQUESTS, settings.rate), Pool(RENDERS, settings.concurrency or 1, lease_ttl_s)


SPEC = ProviderSpec(
    name="aistudios",
    title="AI Studios",
    settings=AIStudiosSettings,
    budgets=budgets,
    client=AIStudiosClient.from_settings,
    stages="worker.providers.aistudios.stages",
    graphs="worker.providers.aistudios.graph:GRAPHS",
    cost="worker.providers.aistudios.stages:job_cost",
    watchers=("worker.providers.aistudios.watch:watcher",),
    webhook="worker.providers.aistudios.webhook:receive",
)
