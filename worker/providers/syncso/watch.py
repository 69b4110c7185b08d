"""The sync.so status sweeps. Parked generations are checked in pages with
``GET /v2/generations?ids=...``, as many ids per request as the request target allows; parked batches one
by one with ``GET /v2/batch/{id}``. Each request spends the account's ``other_rate`` budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from worker.limits import RateBudget
from worker.providers.errors import NotFound
from worker.providers.syncso.client import Generation, SyncSoClient
from worker.providers.syncso.resources import Batch
from worker.providers.syncso.settings import SyncSoSettings
from worker.providers.syncso.spec import BATCH_WAITS, OTHER, SPEC
from worker.waits import WaitResult

if TYPE_CHECKING:
    from worker.context import Context

PROVIDER = SPEC.name
LIST_PATH = "/v2/generations?"
_UUID_CHARS = 36


def ended(generation: Generation) -> WaitResult:
    return WaitResult(state="ended", body=generation.model_dump(mode="json", by_alias=True))


@dataclass
class GenerationWatcher:
    client: SyncSoClient
    settings: SyncSoSettings
    rate: RateBudget
    provider: str = PROVIDER

    @property
    def account(self) -> str:
        return self.settings.account

    @property
    def check_interval_s(self) -> float:
        return self.settings.check_interval_s

    @property
    def lookahead_s(self) -> float:
        return self.settings.check_interval_s / 2

    @property
    def page_size(self) -> int:
        """How many sync.so ids (UUIDs) fit in one request target."""
        return max(1, (self.settings.max_url_bytes - len(LIST_PATH)) // (len("ids=&") + _UUID_CHARS))

    def pages(self, ids: Sequence[str]) -> list[list[str]]:
        pages: list[list[str]] = [[]]
        length = len(LIST_PATH)
        for pid in ids:
            item = len("ids=&") + len(quote(pid, safe=""))
            if pages[-1] and length + item > self.settings.max_url_bytes:
                pages.append([])
                length = len(LIST_PATH)
            pages[-1].append(pid)
            length += item
        return [page for page in pages if page]

    def check(self, ids: Sequence[str]) -> Mapping[str, WaitResult | None]:
        found = self.client.list_generations(ids=ids)
        wanted = set(ids)
        return {g.id: (ended(g) if g.is_terminal else None) for g in found if g.id in wanted}


def watcher(ctx: Context) -> GenerationWatcher:
    return GenerationWatcher(ctx.client(SPEC), ctx.section(SPEC), ctx.budgets.rate(OTHER))


@dataclass
class BatchWatcher:
    """The sweep of running batches: one ``GET /v2/batch/{id}`` per batch, in their own wait namespace
    (``syncso.batch``), checked every ``batch_check_interval_s``."""

    client: SyncSoClient
    settings: SyncSoSettings
    rate: RateBudget
    provider: str = BATCH_WAITS
    page_size: int = 1
    lookahead_s: float = 0.0

    @property
    def account(self) -> str:
        return self.settings.account

    @property
    def check_interval_s(self) -> float:
        return self.settings.batch_check_interval_s

    def pages(self, ids: Sequence[str]) -> list[list[str]]:
        return [[batch_id] for batch_id in ids]

    def check(self, ids: Sequence[str]) -> Mapping[str, WaitResult | None]:
        found: dict[str, WaitResult | None] = {}
        for batch_id in ids:
            try:
                batch = self.client.get_batch(batch_id)
            except NotFound:
                continue  # left out: sync.so does not know it
            found[batch_id] = batch_ended(batch) if batch.is_terminal else None
        return found


def batch_ended(batch: Batch) -> WaitResult:
    return WaitResult(state="ended", body=batch.model_dump(mode="json", by_alias=True))


def batch_watcher(ctx: Context) -> BatchWatcher:
    return BatchWatcher(ctx.client(SPEC), ctx.section(SPEC), ctx.budgets.rate(OTHER))
