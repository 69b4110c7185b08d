"""``SyncSo``: what a sync.so stage talks to (client, settings) and the account budgets it spends."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.context import Context
from worker.handoff import Roots
from worker.limits import Pool, RateBudget
from worker.providers.syncso.client import SyncSoClient
from worker.providers.syncso.settings import SyncSoSettings
from worker.providers.syncso.spec import BATCHES, CREATE, GENERATIONS, OTHER, SPEC, UPLOAD


@dataclass(frozen=True)
class SyncSo:
    client: SyncSoClient
    settings: SyncSoSettings
    generations: Pool  # generations in PENDING or PROCESSING
    batches: Pool  # batches running
    create_rate: RateBudget  # POST /v2/generate
    other_rate: RateBudget  # every other endpoint
    upload_rate: RateBudget  # POST /v2/assets/upload
    webhook_url: str | None  # where sync.so delivers the end of a generation, if anywhere
    roots: Roots = field(default_factory=Roots)  # where local inputs may be read (input roots, handed on)

    @property
    def account(self) -> str:
        return self.settings.account

    @classmethod
    def of(cls, ctx: Context) -> SyncSo:
        b = ctx.budgets
        return cls(
            ctx.client(SPEC),
            ctx.section(SPEC),
            b.pool(GENERATIONS),
            b.pool(BATCHES),
            b.rate(CREATE),
            b.rate(OTHER),
            b.rate(UPLOAD),
            ctx.settings.webhooks.url_for(SPEC.name),
            ctx.roots,
        )
