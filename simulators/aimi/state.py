"""State of the simulated Aimi Sync account: uploads, executions, faults and counters.

No HTTP here. Methods are synchronous and run on the single event loop, so a check followed by a
mutation is atomic. Execution times use `clock` (unix s); chunk request times use `monotonic`.
"""

from __future__ import annotations

import heapq
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.aimi.analysis import estimated_duration
from simulators.aimi.config import AimiSimConfig
from simulators.aimi.execution import FAILURE_REASONS, ExecStatus, Execution
from simulators.aimi.responses import Rejected
from simulators.aimi.upload import ChunkOutcome, ChunkRequest, Upload
from simulators.faults import FaultQueue, HttpFault
from simulators.media import OutputDigests

ROUTES = (
    "upload_init", "upload_chunk", "upload_complete", "video_analysis", "audio_analysis", "generate",
    "execute", "status", "download", "report",
)  # fmt: skip


class OutcomeFault(BaseModel):
    """`POST /_sim/faults` body forcing how the next `times` executions end."""

    model_config = ConfigDict(extra="forbid")

    route: Literal["aimi.outcome"]
    outcome: Literal["finished", "error"]
    reason: str | None = None
    times: int = Field(1, ge=1)


class Throttled(Exception):
    """Refused with 429: `kind` is "concurrency" or "cooldown"; retry in `wait_s`."""

    def __init__(self, kind: str, wait_s: float) -> None:
        super().__init__(kind)
        self.kind = kind
        self.wait_s = wait_s


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    unauthorized: int = 0
    uploads: int = 0
    chunks_received: int = 0
    chunks_resent: int = 0
    bytes_received: int = 0
    max_parallel_chunks: int = 0
    executions_by_task: Counter[str] = field(default_factory=Counter)
    peak_running: int = 0
    throttled: Counter[str] = field(default_factory=Counter)


class AimiState:
    """Everything one simulated Aimi Sync account (one api key) holds, plus its counters."""

    def __init__(
        self,
        config: AimiSimConfig,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock
        self.monotonic = monotonic
        self.reset()

    def reset(self) -> None:
        """Forget everything but the config (the random source is re-seeded)."""
        self.rng = random.Random(self.config.seed)
        self.uploads: dict[str, Upload] = {}
        self.executions: dict[str, Execution] = {}
        self.faults: FaultQueue[HttpFault] = FaultQueue()
        self.outcomes: FaultQueue[OutcomeFault] = FaultQueue()
        self.output_digests = OutputDigests()
        self.stats = Stats()
        self._chunks_in_flight: set[int] = set()  # id() of chunk requests not answered yet
        self._running_until: list[float] = []  # min-heap of ended_at of possibly running executions

    def configure(self, config: AimiSimConfig) -> None:
        """Apply a new config to what happens from now on (a new seed re-seeds)."""
        if config.seed != self.config.seed:
            self.rng = random.Random(config.seed)
        self.config = config

    def new_id(self) -> str:
        """A UUID4 string from the seeded random source."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # Uploads.
    def create_upload(self, file_name: str, file_size: int, file_type: str, now: float) -> Upload:
        """A new, empty upload with a fresh taskid."""
        upload = Upload(self.new_id(), file_name, file_size, file_type, now)
        self.uploads[upload.taskid] = upload
        self.stats.uploads += 1
        return upload

    def upload(self, taskid: Any, *, completed: bool | None = None) -> Upload:
        """The upload `taskid` names, optionally required to be (or not be) completed; else Rejected."""
        upload = self.uploads.get(taskid) if isinstance(taskid, str) else None
        if upload is None:
            raise Rejected(f"unknown taskid {taskid!r}")
        if completed is True and not upload.completed:
            raise Rejected(f"upload {upload.taskid} is not complete")
        if completed is False and upload.completed:
            raise Rejected(f"upload {upload.taskid} is already complete")
        return upload

    def begin_chunk(self, upload: Upload, index: int) -> ChunkRequest:
        """Record a chunk request as started (its body not read yet)."""
        request = ChunkRequest(index, self.monotonic())
        upload.requests.append(request)
        self._chunks_in_flight.add(id(request))
        self.stats.max_parallel_chunks = max(self.stats.max_parallel_chunks, len(self._chunks_in_flight))
        return request

    def store_chunk(self, upload: Upload, request: ChunkRequest, data: bytes) -> None:
        """Keep a chunk's bytes (a later copy of an index replaces the earlier one)."""
        if upload.completed:
            request.outcome = ChunkOutcome.REFUSED
            raise Rejected(f"upload {upload.taskid} is already complete")
        if request.index in upload.acked:
            self.stats.chunks_resent += 1
        upload.chunks[request.index] = data
        request.size = len(data)
        self.stats.chunks_received += 1
        self.stats.bytes_received += len(data)

    def end_chunk(self, upload: Upload, request: ChunkRequest, outcome: ChunkOutcome | None) -> None:
        """Close a chunk request; `outcome` None keeps the one already set (e.g. REFUSED)."""
        request.ended_at = self.monotonic()
        if outcome is not None:
            request.outcome = outcome
        if request.outcome is ChunkOutcome.ACKED:
            upload.acked.add(request.index)
        # A set, not a counter: a reset during the request must not leave a count below zero.
        self._chunks_in_flight.discard(id(request))

    # Executions.
    def running(self, now: float) -> int:
        """Executions pending or processing at `now`."""
        while self._running_until and self._running_until[0] <= now:
            heapq.heappop(self._running_until)
        return len(self._running_until)

    def start_execution(self, upload: Upload, plan: dict[str, Any], now: float) -> Execution:
        """Start executing `plan`; raise Throttled when `max_executions` are pending or processing."""
        cfg = self.config
        if self.running(now) >= cfg.max_executions:
            self.stats.throttled["concurrency"] += 1
            raise Throttled("concurrency", self._running_until[0] - now)
        roll = self.rng.random()  # drawn every time so a seed gives the same sequence with or without faults
        reason = self.rng.choice(FAILURE_REASONS)
        forced = self.outcomes.take("aimi.outcome")
        if forced is not None:
            outcome = ExecStatus(forced.outcome)
            reason = forced.reason or reason
        else:
            outcome = ExecStatus.ERROR if roll < cfg.fail_share else ExecStatus.FINISHED
        duration_s = (upload.analysis or {}).get("duration") or estimated_duration(
            upload.file_size, cfg.bytes_per_second
        )
        ended_at = now + cfg.execution_s + duration_s * cfg.execution_per_video_s
        options = plan.get("options")
        multitrack = isinstance(options, dict) and options.get("multitrack") is True
        execution = Execution(
            execid=self.new_id(),
            taskid=upload.taskid,
            plan=plan,
            multitrack=multitrack,
            started_at=now,
            ended_at=ended_at,
            outcome=outcome,
            reason=reason if outcome is ExecStatus.ERROR else None,
        )
        self.executions[execution.execid] = execution
        self.stats.executions_by_task[upload.taskid] += 1
        if ended_at > now:
            heapq.heappush(self._running_until, ended_at)
        # Running only rises at starts, so the peak measured here is exact.
        self.stats.peak_running = max(self.stats.peak_running, self.running(now))
        return execution

    def poll(self, execution: Execution, now: float) -> None:
        """Count a status call; raise Throttled when it comes within `status_cooldown_s` of the last
        admitted one (a refused call does not restart the cooldown)."""
        last, cooldown_s = execution.last_polled_at, self.config.status_cooldown_s
        if last is not None and now - last < cooldown_s:
            self.stats.throttled["cooldown"] += 1
            raise Throttled("cooldown", last + cooldown_s - now)
        execution.last_polled_at = now
        execution.polls += 1

    def snapshot(self, now: float) -> dict[str, Any]:
        """The `/_sim/stats` view of this provider."""
        s = self.stats
        states = Counter(execution.status_at(now) for execution in self.executions.values())
        return {
            "requests": {route: s.requests[route] for route in ROUTES},
            "responses": dict(sorted(s.responses.items())),
            "unauthorized": s.unauthorized,
            "uploads": s.uploads,
            "chunks_received": s.chunks_received,
            "chunks_resent": s.chunks_resent,
            "bytes_received": s.bytes_received,
            "max_parallel_chunks": s.max_parallel_chunks,
            "executions_started": len(self.executions),
            "executions_by_task": dict(s.executions_by_task),
            "running": self.running(now),
            "peak_running": s.peak_running,
            "throttled": {kind: s.throttled[kind] for kind in ("concurrency", "cooldown")},
            "executions_finished": states[ExecStatus.FINISHED],
            "executions_failed": states[ExecStatus.ERROR],
        }
