"""A batch of the simulated sync.so API (reference 3.8): its lifecycle, metrics and wire forms.

No HTTP here. A batch is PENDING for `batch_pending_s`, then its jobs are created (JOBS_CREATED): one
generation per record, made at batch creation with `created_at` at that moment so its whole lifecycle
is fixed up front like any generation's. The batch is PROCESSING once any generation has left
PENDING, and ends when every generation has: FAILED if none completed, else COMPLETED.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from simulators.syncso.generations import UNSUCCESSFUL, Generation, Status, iso_time


class BatchStatus(StrEnum):
    PENDING = "PENDING"
    JOBS_CREATED = "JOBS_CREATED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


BATCH_TERMINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED})


@dataclass(frozen=True)
class Batch:
    id: str
    seq: int
    created_at: float
    jobs_at: float  # when the generations are created (each one's created_at)
    started_at: float  # when the first generation leaves PENDING (a rejected one, by being refused)
    terminal_at: float  # when the last generation ends
    all_failed: bool  # no generation completes
    request_ids: tuple[str, ...]  # file order
    generations: tuple[Generation, ...]  # one per request id, same order
    webhook_url: str | None

    @classmethod
    def of(
        cls,
        batch_id: str,
        *,
        seq: int,
        created_at: float,
        request_ids: tuple[str, ...],
        generations: tuple[Generation, ...],
        webhook_url: str | None,
    ) -> Batch:
        """The batch of `generations` (at least one, all created at the batch's jobs time)."""
        jobs_at = generations[0].created_at
        return cls(
            id=batch_id,
            seq=seq,
            created_at=created_at,
            jobs_at=jobs_at,
            started_at=min(g.processing_at for g in generations),
            terminal_at=max(jobs_at, *(g.terminal_at for g in generations)),
            all_failed=all(g.outcome.status in UNSUCCESSFUL for g in generations),
            request_ids=request_ids,
            generations=generations,
            webhook_url=webhook_url,
        )

    def status_at(self, now: float) -> BatchStatus:
        if now <= self.jobs_at:
            return BatchStatus.PENDING
        if now >= self.terminal_at:
            return BatchStatus.FAILED if self.all_failed else BatchStatus.COMPLETED
        return BatchStatus.PROCESSING if now >= self.started_at else BatchStatus.JOBS_CREATED

    def active_at(self, now: float) -> bool:
        """Whether the batch counts against the batch concurrency limit."""
        return self.status_at(now) not in BATCH_TERMINAL

    def metrics_at(self, now: float) -> dict[str, int]:
        statuses = [g.status_at(now) for g in self.generations]
        success = statuses.count(Status.COMPLETED)
        failed = sum(1 for s in statuses if s in UNSUCCESSFUL)
        return {
            "total_generations": len(statuses),
            "success_count": success,
            "failed_count": failed,
            "pending_count": len(statuses) - success - failed,
        }

    def to_wire(self, now: float, base_url: str) -> dict[str, Any]:
        """The BatchResponse; `base_url` (ending in "/") roots `outputUrl`, the API's results route."""
        return {
            "id": self.id,
            "created_at": iso_time(self.created_at),  # snake_case on the wire, unlike the rest
            "status": self.status_at(now).value,
            "metrics": self.metrics_at(now),
            "webhookUrl": self.webhook_url,
            "outputUrl": f"{base_url}v2/batch/{self.id}/output",
        }

    def lifecycle(self, now: float) -> dict[str, Any]:
        """The control route's view: ids and transition times."""
        return {
            "id": self.id,
            "status": self.status_at(now).value,
            "created_at": self.created_at,
            "jobs_at": self.jobs_at,
            "terminal_at": self.terminal_at,
            "webhook_url": self.webhook_url,
            "request_ids": list(self.request_ids),
            "generation_ids": [g.id for g in self.generations],
        }


def result_row(request_id: str, generation: Generation, now: float, output_url: str | None) -> dict[str, Any]:
    """[INF] One line of the results file; `output_url` is the generation's signed output URL."""
    status = generation.status_at(now)
    failed = status in UNSUCCESSFUL
    return {
        "request_id": request_id,
        "generation_id": generation.id,
        "status": status.value,
        "output_url": output_url if status is Status.COMPLETED else None,
        "error": generation.outcome.error if failed else None,
        "error_code": generation.outcome.error_code if failed else None,
    }
