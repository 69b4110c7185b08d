"""The sync.so status sweep: parked generations are checked in pages with ``GET /v2/generations?ids=...``,
as many ids per request as the request target allows, each request spending the account's
``other_rate`` budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from worker.limits import RateBudget
from worker.providers.syncso.client import Generation, SyncSoClient
from worker.providers.syncso.settings import SyncSoSettings
from worker.providers.syncso.spec import OTHER, SPEC
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
