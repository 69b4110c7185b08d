"""The Aimi status sweep: each parked execution is checked with ``POST /sync_status`` (one execution per
request), never sooner than ``status_interval_s`` after its last check: Aimi's FAQ asks for at least 5 s
between polls of one execution, or a cooldown may be triggered. Each request spends the account's rate
budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.limits import RateBudget
from worker.providers.aimi.client import AimiClient
from worker.providers.aimi.settings import AimiSettings
from worker.providers.aimi.spec import REQUESTS, SPEC
from worker.waits import WaitResult

if TYPE_CHECKING:
    from worker.context import Context


@dataclass
class ExecutionWatcher:
    client: AimiClient
    settings: AimiSettings
    rate: RateBudget
    provider: str = SPEC.name
    page_size: int = 1
    lookahead_s: float = 0.0  # never check an execution before its interval is up

    @property
    def account(self) -> str:
        return self.settings.account

    @property
    def check_interval_s(self) -> float:
        return max(self.settings.check_interval_s, self.settings.status_interval_s)

    def pages(self, ids: Sequence[str]) -> list[list[str]]:
        return [[execid] for execid in ids]

    def check(self, ids: Sequence[str]) -> Mapping[str, WaitResult | None]:
        found: dict[str, WaitResult | None] = {}
        for execid in ids:
            execution = self.client.status(execid)
            body = execution.model_dump(mode="json", exclude_none=True)
            found[execid] = WaitResult(state="ended", body=body) if execution.is_terminal else None
        return found


def watcher(ctx: Context) -> ExecutionWatcher:
    return ExecutionWatcher(ctx.client(SPEC), ctx.section(SPEC), ctx.budgets.rate(REQUESTS))
