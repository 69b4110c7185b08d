"""The AI Studios progress sweep: each parked render is checked with ``GET .../editor/progress/{id}``
(AI Studios has no call that reports many projects' progress, so a page is one project), each request
spending the account's rate budget. A render is over when its progress reaches 100 with a download URL,
when AI Studios reports it failed, or when its progress has not moved for ``stall_s``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from schemas import layout as L
from worker.limits import RateBudget
from worker.providers.aistudios.client import AIStudiosClient, Progress
from worker.providers.aistudios.settings import AIStudiosSettings
from worker.providers.aistudios.spec import REQUESTS, SPEC
from worker.providers.errors import JobRejected, NotFound
from worker.waits import WaitResult

if TYPE_CHECKING:
    from worker.context import Context

PROVIDER = SPEC.name
STALLED = "genq_render_stalled"


def failed(code: str, message: str) -> WaitResult:
    return WaitResult(state="ended", body={"failed": True, "code": code, "message": message})


@dataclass
class RenderWatcher:
    client: AIStudiosClient
    settings: AIStudiosSettings
    rate: RateBudget
    redis: redis.Redis
    clock: Callable[[], float] = field(default=time.time)
    provider: str = PROVIDER
    page_size: int = 1

    @property
    def account(self) -> str:
        return self.settings.account

    @property
    def check_interval_s(self) -> float:
        return self.settings.check_interval_s

    @property
    def lookahead_s(self) -> float:
        return self.settings.check_interval_s / 2

    def pages(self, ids: Sequence[str]) -> list[list[str]]:
        return [[project_id] for project_id in ids]

    def check(self, ids: Sequence[str]) -> Mapping[str, WaitResult | None]:
        found: dict[str, WaitResult | None] = {}
        for project_id in ids:
            try:
                progress = self.client.progress(project_id)
            except NotFound:
                continue  # left out: the stage asks once more itself, and a 404 then fails the job
            except JobRejected as exc:
                found[project_id] = failed(exc.code or "render_failed", exc.message)
                continue
            found[project_id] = self._judge(project_id, progress)
        return found

    def _judge(self, project_id: str, progress: Progress) -> WaitResult | None:
        """The end of a render that is done or stuck; None while it moves."""
        key = L.WAIT_PROGRESS_KEY.format(provider=PROVIDER, provider_id=project_id)
        if progress.done:
            self.redis.delete(key)
            return WaitResult(state="ended", body=progress.model_dump(mode="json", by_alias=True))
        now = self.clock()
        seen = self.redis.get(key)
        last = json.loads(seen) if seen else None
        if last is None or progress.progress > last["progress"]:
            moved = {"progress": progress.progress, "since": now}
            self.redis.set(key, json.dumps(moved), ex=round(self.settings.max_wait_s + 3600))
            return None
        if now - last["since"] >= self.settings.stall_s:
            self.redis.delete(key)
            stuck = f"render progress stuck at {progress.progress:g}% for {now - last['since']:.0f} s"
            return failed(STALLED, f"{stuck} (GENQ_AISTUDIOS__STALL_S)")
        return None


def watcher(ctx: Context) -> RenderWatcher:
    return RenderWatcher(ctx.client(SPEC), ctx.section(SPEC), ctx.budgets.rate(REQUESTS), ctx.redis)
