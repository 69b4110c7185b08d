"""Signed webhook deliveries of the simulated sync.so API (reference 3.11).

A generation created with a `webhookUrl` gets one POST of its Generation object at its terminal time
plus `webhook_delay_s`; a batch created with a `webhook_url` gets one POST of its BatchResponse when it
completes or fails, the same way. Each is signed like sync.so: `Sync-Signature: t=<unix s>,v1=<hex>`
and the same hex in `X-Signature-Primary`, where hex = HMAC-SHA256(secret, f"{t}." + body). One
attempt, never retried.
Timers, ready queue and workers: `simulators.webhook_delivery`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulators.events import EventLog
from simulators.syncso.batch import Batch
from simulators.syncso.generations import Generation
from simulators.syncso.state import SyncSoState
from simulators.webhook_delivery import WebhookQueue

SIGNATURE_HEADER = "Sync-Signature"
PRIMARY_SIGNATURE_HEADER = "X-Signature-Primary"
Payload = Callable[[float], dict[str, Any]]  # the wire object (Generation, BatchResponse) at a unix time


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
    resource_id: str  # a generation or batch id, for the event log
    terminal_at: float
    url: str
    payload: Payload
    copies: int


class WebhookDispatcher(WebhookQueue[SyncSoState, _Due]):
    """Pending and in-flight deliveries of one simulated account; counters live in `state.stats`."""

    def __init__(self, state: SyncSoState, events: EventLog) -> None:
        super().__init__("syncso", state, events)

    def schedule(self, generation: Generation, url: str, payload: Payload) -> None:
        """Arm the delivery; must run on the event loop, in the same step as the generation's creation."""
        self._schedule(generation.id, generation.terminal_at, url, payload)

    def schedule_batch(self, batch: Batch, url: str, payload: Payload) -> None:
        """Arm the batch's delivery; must run on the event loop, in the same step as its creation."""
        self._schedule(batch.id, batch.terminal_at, url, payload)

    def _schedule(self, resource_id: str, terminal_at: float, url: str, payload: Payload) -> None:
        state, cfg = self.state, self.state.config
        # Drawn at creation, both always, so a seed gives the same sequence whatever the shares are.
        lost = self._lost()
        copies = 2 if state.rng.random() < cfg.webhook_duplicate_share else 1
        state.stats.webhooks["scheduled"] += 1
        delay_s = max(terminal_at + cfg.webhook_delay_s - state.clock(), 0.0)
        self._arm(delay_s, _Due(resource_id, terminal_at, url, payload, copies), lost)

    def _fired(self, due: _Due) -> None:
        if due.copies > 1:
            self.state.stats.webhooks["duplicated"] += 1

    async def _deliver(self, due: _Due) -> None:
        now = self.state.clock()
        # The loop's monotonic timer may fire a hair before the wall clock reaches terminal_at.
        body = encode_json(due.payload(max(now, due.terminal_at)))
        headers = signed_headers(self.state.config.webhook_secret, int(now), body)
        for _ in range(due.copies):
            stats = self.state.stats.webhooks
            stats["sent"] += 1
            status, error = await self._post(due.url, content=body, headers=headers)
            if error is not None:
                stats["errors"] += 1
            else:
                stats["delivered" if 200 <= status < 300 else "refused"] += 1
            self._log(status, error, due.resource_id)
