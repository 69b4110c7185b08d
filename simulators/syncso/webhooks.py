"""Signed webhook deliveries of the simulated sync.so API (reference 3.11).

A generation created with a `webhookUrl` gets one POST of its Generation object at its terminal time
plus `webhook_delay_s`, signed like sync.so: `Sync-Signature: t=<unix s>,v1=<hex>` and the same hex in
`X-Signature-Primary`, where hex = HMAC-SHA256(secret, f"{t}." + body). One attempt, never retried.
Deliveries are `call_later` timers on the server's event loop (a heap entry each, no coroutine until
due). A due delivery joins a ready queue drained by at most MAX_CONNECTIONS worker tasks over one shared
client: a burst of thousands due at once never piles up as tasks waiting in the client's pool (whose
queue is rescanned on every completion, so that would cost O(n²)).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from simulators.events import EventLog
from simulators.syncso.state import Generation, SyncSoState

SIGNATURE_HEADER = "Sync-Signature"
PRIMARY_SIGNATURE_HEADER = "X-Signature-Primary"
# Concurrent POSTs (worker tasks); further due deliveries wait in the ready queue. Kept small because
# httpcore's pool scans every connection on each request event: measured on loopback, 8 workers deliver
# ~670/s where 100 manage ~200/s and stall the loop for half a second.
MAX_CONNECTIONS = 8

Payload = Callable[[float], dict[str, Any]]  # the Generation wire object at a given unix time


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 keyed with the whole secret (`whsec_` prefix included) over `f"{t}." + body`."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    signature = sign(secret, timestamp, body)
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: f"t={timestamp},v1={signature}",
        PRIMARY_SIGNATURE_HEADER: signature,
    }


def encode_json(content: Any) -> bytes:
    # Same bytes as starlette's JSONResponse, so the body equals what `GET /v2/generate/{id}` serves.
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Due:
    generation: Generation
    url: str
    payload: Payload
    copies: int


class WebhookDispatcher:
    """Pending and in-flight deliveries of one simulated account; counters live in `state.stats`."""

    def __init__(self, state: SyncSoState, events: EventLog) -> None:
        self.state = state
        self.events = events
        self._timers: dict[str, asyncio.TimerHandle] = {}  # by generation id
        self._ready: deque[_Due] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def schedule(self, generation: Generation, url: str, payload: Payload) -> None:
        """Arm the delivery; must run on the event loop, in the same step as the generation's creation."""
        state, cfg = self.state, self.state.config
        # Drawn at creation, both always, so a seed gives the same sequence whatever the shares are.
        lost = state.rng.random() < cfg.webhook_loss_share
        copies = 2 if state.rng.random() < cfg.webhook_duplicate_share else 1
        state.stats.webhooks["scheduled"] += 1
        delay_s = max(generation.terminal_at + cfg.webhook_delay_s - state.clock(), 0.0)
        self._timers[generation.id] = asyncio.get_running_loop().call_later(
            delay_s, self._fire, _Due(generation, url, payload, copies), lost
        )

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

    def _fire(self, due: _Due, lost: bool) -> None:
        del self._timers[due.generation.id]
        stats = self.state.stats.webhooks
        if lost:
            stats["lost"] += 1
            return
        if due.copies > 1:
            stats["duplicated"] += 1
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

    async def _deliver(self, due: _Due) -> None:
        gen_id, client = due.generation.id, self._shared_client()
        now = self.state.clock()
        # The loop's monotonic timer may fire a hair before the wall clock reaches terminal_at.
        body = encode_json(due.payload(max(now, due.generation.terminal_at)))
        headers = signed_headers(self.state.config.webhook_secret, int(now), body)
        timeout = httpx.Timeout(self.state.config.webhook_timeout_s)
        for _ in range(due.copies):
            stats = self.state.stats.webhooks
            stats["sent"] += 1
            status, error = 0, None
            try:
                response = await client.post(due.url, content=body, headers=headers, timeout=timeout)
            except Exception as exc:  # any failure to get an answer (refused, timeout, bad URL) is an error
                stats["errors"] += 1
                error = type(exc).__name__
            else:
                status = response.status_code
                stats["delivered" if 200 <= status < 300 else "refused"] += 1
            self.events.record(
                {
                    "t": self.state.clock(),
                    "route": "syncso.webhook",
                    "status": status,
                    "error_code": error,
                    "generation_id": gen_id,
                }
            )

    def _shared_client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
            # trust_env=False: proxy variables of the host must not divert deliveries to loopback receivers.
            self._client = httpx.AsyncClient(limits=limits, trust_env=False)
        return self._client
