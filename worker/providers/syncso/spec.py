"""sync.so in the provider registry: the ``lipsync`` job's provider."""

from __future__ import annotations

from worker.limits.budgets import Pool, RateBudget
from worker.providers.spec import ProviderSpec
from worker.providers.syncso.client import SyncSoClient
from worker.providers.syncso.settings import SyncSoSettings

CREATE = "syncso.create"  # POST /v2/generate
OTHER = "syncso.other"  # every other endpoint
GENERATIONS = "syncso.generations"  # generations in PENDING or PROCESSING


def budgets(settings: SyncSoSettings, lease_ttl_s: float) -> tuple[RateBudget | Pool, ...]:
    return (
        RateBudget.of(CREATE, settings.create_rate),
        RateBudget.of(OTHER, settings.other_rate),
        Pool(GENERATIONS, settings.effective_concurrency, lease_ttl_s),
    )


SPEC = ProviderSpec(
    name="syncso",
    title="sync.so",
    settings=SyncSoSettings,
    budgets=budgets,
    client=lambda settings, redis: SyncSoClient.from_settings(settings),
    stages="worker.providers.syncso.stages",
    flow="worker.providers.syncso.flow:build",
    watcher="worker.providers.syncso.watch:watcher",
    webhook="worker.providers.syncso.webhook:receive",
)
