"""sync.so in the provider registry: the ``lipsync`` job's provider."""

from __future__ import annotations

from worker.limits.budgets import Pool, RateBudget
from worker.providers.spec import ProviderSpec
from worker.providers.syncso.client import SyncSoClient
from worker.providers.syncso.settings import SyncSoSettings

CREATE = "syncso.create"  # POST /v2/generate
OTHER = "syncso.other"  # every other endpoint
UPLOAD = "syncso.upload"  # POST /v2/assets/upload
GENERATIONS = "syncso.generations"  # generations in PENDING or PROCESSING
BATCHES = "syncso.batches"  # batches running
# Parked waits for batches: their own sweep (GET /v2/batch/{id}), beside the generations' one.
BATCH_WAITS = "syncso.batch"


def budgets(settings: SyncSoSettings, lease_ttl_s: float) -> tuple[RateBudget | Pool, ...]:
    return (
        RateBudget.of(CREATE, settings.create_rate),
        RateBudget.of(OTHER, settings.other_rate),
        RateBudget.of(UPLOAD, settings.upload_rate),
        Pool(GENERATIONS, settings.effective_concurrency, lease_ttl_s),
        Pool(BATCHES, settings.batch_concurrency, lease_ttl_s),
    )


SPEC = ProviderSpec(
    name="syncso",
    title="sync.so",
    settings=SyncSoSettings,
    budgets=budgets,
    client=lambda settings, redis: SyncSoClient.from_settings(settings),
    stages="worker.providers.syncso.stages",
    graphs="worker.providers.syncso.graph:GRAPHS",
    watchers=("worker.providers.syncso.watch:watcher", "worker.providers.syncso.watch:batch_watcher"),
    webhook="worker.providers.syncso.webhook:receive",
    commands="worker.providers.syncso.commands:COMMANDS",
    cost="worker.providers.syncso.stages:job_cost",
)
