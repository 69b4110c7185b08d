"""Webhook delivery plumbing shared by the provider simulators: timers, a ready queue, a few workers.

A provider's dispatcher subclasses `WebhookQueue`, decides what to send and when (`_arm`), and makes
each POST in `_deliver`. Deliveries are `call_later` timers on the server's event loop (a heap entry
each, no coroutine until due). A due delivery joins a ready queue drained by at most MAX_CONNECTIONS
worker tasks over one shared client: a burst of thousands due at once never piles up as tasks waiting
in the client's pool (whose queue is rescanned on every completion, so that would cost O(n²)).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import httpx

from simulators.events import EventLog

# Concurrent POSTs (worker tasks); further due deliveries wait in the ready queue. Kept small because
# httpcore's pool scans every connection on each request event: measured on loopback, 8 workers deliver
# ~670/s where 100 manage ~200/s and stall the loop for half a second.
MAX_CONNECTIONS = 8


class WebhookSettings(Protocol):
    """The webhook fields every simulator config carries."""

    @property
    def webhook_loss_share(self) -> float: ...
    @property
    def webhook_timeout_s(self) -> float: ...


class WebhookCounters(Protocol):
    """Where delivery outcomes are counted, e.g. `webhooks["lost"]`."""

    @property
    def webhooks(self) -> Counter[str]: ...


class WebhookState(Protocol):
    """What a dispatcher reads of its provider's state."""

    @property
    def config(self) -> WebhookSettings: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def stats(self) -> WebhookCounters: ...


StateT = TypeVar("StateT", bound=WebhookState)
DueT = TypeVar("DueT")


class WebhookQueue(ABC, Generic[StateT, DueT]):
    """Pending and in-flight deliveries of one simulated account; counters live in `state.stats`.

    `provider` names the events logged, e.g. "syncso" logs each POST as route "syncso.webhook".
    """

    def __init__(self, provider: str, state: StateT, events: EventLog) -> None:
        self.provider = provider
        self.state = state
        self.events = events
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._keys = itertools.count()
        self._ready: deque[DueT] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

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
        """Cancel everything, wait for the workers to stop and close the shared client."""
        workers = list(self._workers)
        self.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _lost(self) -> bool:
        """Draw whether a delivery is lost (never sent), `webhook_loss_share` of the time."""
        return self.state.rng.random() < self.state.config.webhook_loss_share

    def _arm(self, delay_s: float, due: DueT, lost: bool) -> None:
        """Fire `due` in `delay_s`; must run on the event loop."""
        key = next(self._keys)
        self._timers[key] = asyncio.get_running_loop().call_later(delay_s, self._fire, key, due, lost)

    def _fired(self, due: DueT) -> None:
        """Hook: `due` has just joined the ready queue (lost ones never do)."""

    @abstractmethod
    async def _deliver(self, due: DueT) -> None:
        """Make the POST(s) of one due delivery, count them and `_log` each."""

    def _fire(self, key: int, due: DueT, lost: bool) -> None:
        del self._timers[key]
        if lost:
            self.state.stats.webhooks["lost"] += 1
            return
        self._fired(due)
        self._ready.append(due)
        if len(self._workers) < MAX_CONNECTIONS:
            self._workers.add(asyncio.get_running_loop().create_task(self._work()))

    async def _work(self) -> None:
        try:
            while self._ready:
                await self._deliver(self._ready.popleft())
        finally:
            # Leave the set in the same step as the empty-queue check: `_fire` must never count a worker
            # that will not look at the queue again.
            task = asyncio.current_task()
            if task is not None:
                self._workers.discard(task)

    async def _post(self, url: str, **kwargs: Any) -> tuple[int, str | None]:
        """POST once: (status, None), or (0, the exception's name) when no answer came."""
        timeout = httpx.Timeout(self.state.config.webhook_timeout_s)
        try:
            response = await self._shared_client().post(url, timeout=timeout, **kwargs)
        except Exception as exc:  # any failure to get an answer (refused, timeout, bad URL) is an error
            return 0, type(exc).__name__
        return response.status_code, None

    def _log(self, status: int, error: str | None, generation_id: str) -> None:
        self.events.record(
            {
                "t": self.state.clock(),
                "route": f"{self.provider}.webhook",
                "status": status,
                "error_code": error,
                "generation_id": generation_id,
            }
        )

    def _shared_client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
            # trust_env=False: proxy variables of the host must not divert deliveries to loopback receivers.
            self._client = httpx.AsyncClient(limits=limits, trust_env=False)
        return self._client
