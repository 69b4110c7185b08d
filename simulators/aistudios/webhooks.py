"""Webhook deliveries of the simulated AI Studios v3 API (reference 2.7).

[INF] The docs name the fields but not the method, encoding, signature or retries. The simulator
POSTs JSON to exactly the render's `webhookUrl` (query string kept), unsigned, one attempt each:
at 100 % (plus `webhook_delay_s`) `{"progress": 100, "credit", "backendTaskId", "download_url"}`;
with `webhook_progress` also `{"progress": n, "backendTaskId"}` at every intermediate step. A failed
or stalled render sends no final delivery. Timers, queue and workers: `simulators.webhook_delivery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulators.aistudios.render import Outcome, Render, output_url
from simulators.aistudios.state import AIStudiosState
from simulators.events import EventLog
from simulators.webhook_delivery import WebhookQueue


@dataclass(frozen=True)
class _Due:
    render: Render
    url: str
    payload: dict[str, Any]


class WebhookDispatcher(WebhookQueue[AIStudiosState, _Due]):
    """Pending and in-flight deliveries of one simulated account; counters live in `state.stats`."""

    def __init__(self, state: AIStudiosState, events: EventLog) -> None:
        super().__init__("aistudios", state, events)

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
        for at, payload in timed:
            lost = self._lost()
            self._arm(max(at - self.state.clock(), 0.0), _Due(render, url, payload), lost)

    async def _deliver(self, due: _Due) -> None:
        status, error = await self._post(due.url, json=due.payload)
        self.state.stats.webhooks["delivered" if 200 <= status < 300 else "failed"] += 1
        self._log(status, error, due.render.project_id)
