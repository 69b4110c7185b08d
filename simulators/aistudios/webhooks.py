"""Webhook deliveries of the simulated AI Studios v3 API (reference 2.7).

[INF] The docs name the fields but not the method, encoding, signature or retries. The simulator
POSTs JSON to exactly the render's `webhookUrl` (query string kept), unsigned, one attempt each:
at 100 % (plus `webhook_delay_s`) `{"progress": 100, "credit", "backendTaskId", "download_url"}`;
with `webhook_progress` also `{"progress": n, "backendTaskId"}` at every intermediate step. A failed
or stalled render sends no final delivery. Deliveries are `call_later` timers on the server's loop;
due ones wait in a ready queue drained by at most MAX_CONNECTIONS worker tasks over one client.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx

from simulators.aistudios.render import Outcome, Render, output_url
from simulators.aistudios.state import AIStudiosState
from simulators.events import EventLog

MAX_CONNECTIONS = 8


@dataclass(frozen=True)
class _Due:
    render: Render
    url: str
    payload: dict[str, Any]


class WebhookDispatcher:
    """Pending and in-flight deliveries of one simulated account; counters live in `state.stats`."""

    def __init__(self, state: AIStudiosState, events: EventLog) -> None:
        self.state = state
        self.events = events
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._keys = itertools.count()
        self._ready: deque[_Due] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def schedule(self, render: Render) -> None:
        """Arm the render's deliveries; must run on the event loop, in the step that started it."""
        url, cfg = render.options.webhook_url, self.state.config
        if url is None:
            return
        timed: list[tuple[float, dict[str, Any]]] = []
        if cfg.webhook_progress:
            timed += [
                (step.at, {"progress": int(step.progress), "backendTaskId": render.task_id})
                for step in render.steps
                if step.progress < 100
            ]
        if render.outcome is Outcome.EXPORTED:
            final = {
                "progress": 100,
                "credit": render.credit,
                "backendTaskId": render.task_id,
                "download_url": output_url(render.base_url, render.project_id),
            }
            timed.append((render.ended_at + cfg.webhook_delay_s, final))
        loop = asyncio.get_running_loop()
        for at, payload in timed:
            lost = self.state.rng.random() < cfg.webhook_loss_share
            key = next(self._keys)
            delay_s = max(at - self.state.clock(), 0.0)
            self._timers[key] = loop.call_later(delay_s, self._fire, key, _Due(render, url, payload), lost)

    def pending(self) -> int:
        """Deliveries not started yet: armed timers plus due ones waiting for a worker."""
        return len(self._timers) + len(self._ready)

    def cancel(self) -> None:
        """Drop pending deliveries and abort the ones in flight (used by `POST /_sim/reset`)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._ready.clear()
        for task in self._workers:
            task.cancel()

    async def aclose(self) -> None:
        workers = list(self._workers)
        self.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _fire(self, key: int, due: _Due, lost: bool) -> None:
        del self._timers[key]
        if lost:
            self.state.stats.webhooks["lost"] += 1
            return
        self._ready.append(due)
        if len(self._workers) < MAX_CONNECTIONS:
            self._workers.add(asyncio.get_running_loop().create_task(self._work()))

    async def _work(self) -> None:
        try:
            while self._ready:
                await self._deliver(self._ready.popleft())
        finally:
            # Leave the set in the same step as the empty-queue check, so `_fire` never counts a worker
            # that will not look at the queue again.
            task = asyncio.current_task()
            if task is not None:
                self._workers.discard(task)

    async def _deliver(self, due: _Due) -> None:
        status, error = 0, None
        timeout = httpx.Timeout(self.state.config.webhook_timeout_s)
        try:
            response = await self._shared_client().post(due.url, json=due.payload, timeout=timeout)
        except Exception as exc:  # any failure to get an answer (refused, timeout, bad URL) is a failure
            error = type(exc).__name__
        else:
            status = response.status_code
        self.state.stats.webhooks["delivered" if 200 <= status < 300 else "failed"] += 1
        self.events.record(
            {
                "t": self.state.clock(),
                "route": "aistudios.webhook",
                "status": status,
                "error_code": error,
                "generation_id": due.render.project_id,
            }
        )

    def _shared_client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
            # trust_env=False: proxy variables of the host must not divert deliveries to loopback receivers.
            self._client = httpx.AsyncClient(limits=limits, trust_env=False)
        return self._client
