"""State of the simulated sync.so API: generations with a lazily computed lifecycle, admission rules.

No HTTP here. Each generation's status is a function of time fixed at creation
(PENDING until `processing_at`, PROCESSING until `terminal_at`, then its outcome), so nothing runs in
the background and every status transition time is known exactly. All methods are synchronous and
are called from the single event loop, so a check followed by a mutation is atomic.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.faults import FaultQueue, HttpFault
from simulators.limits import IdempotencyStore, SlidingWindow
from simulators.syncso.config import SyncSoSimConfig
from simulators.syncso.validate import CreateRequest


class Status(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.REJECTED})

# Documented generation failure codes with the human message the simulator puts in `error`.
TRANSIENT_ERRORS = {
    "generation_timeout": "Generation timed out.",
    "generation_pipeline_failed": "Generation pipeline failed.",
    "generation_unhandled_error": "An unexpected error occurred during generation.",
    "generation_database_error": "A database error occurred during generation.",
    "generation_infra_storage_error": "A storage error occurred during generation.",
    "generation_infra_resource_exhausted": "Processing resources are exhausted.",
    "generation_infra_service_unavailable": "A processing service is unavailable.",
}
REJECT_ERRORS = {
    "generation_media_metadata_missing": "The media has no duration or frame-rate metadata.",
    "generation_audio_length_exceeded": "The audio is longer than 300 seconds.",
    "generation_input_audio_invalid": "The audio input could not be decoded.",
    "generation_input_video_inaccessible": "The video input could not be downloaded.",
    "generation_input_audio_inaccessible": "The audio input could not be downloaded.",
    "generation_input_face_selection_invalid": "No face was found at the selected position.",
}
ROUTES = ("create", "get", "list", "models", "download")
THROTTLE_CODES = ("rate_limit_exceeded", "concurrency_limit_reached")
# scheduled = lost + deliveries fired (or still pending); sent = POSTs made (a duplicate is two);
# delivered (2xx) + refused (other statuses) + errors (no answer) = sent once none is in flight.
WEBHOOK_COUNTERS = ("scheduled", "sent", "delivered", "refused", "errors", "lost", "duplicated")


class OutcomeFault(BaseModel):
    """`POST /_sim/faults` body forcing how the next `times` created generations end."""

    model_config = ConfigDict(extra="forbid")

    route: Literal["syncso.outcome"]
    status: Literal["COMPLETED", "FAILED", "REJECTED"]
    error_code: str | None = None
    error: str | None = None
    times: int = Field(1, ge=1)


@dataclass(frozen=True)
class Outcome:
    status: Status
    error_code: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Generation:
    id: str
    seq: int
    created_at: float
    request: CreateRequest
    processing_at: float
    terminal_at: float
    outcome: Outcome
    idempotency_key: str | None

    def status_at(self, now: float) -> Status:
        if now <= self.created_at:
            return Status.PENDING  # the create response says PENDING even with zero durations
        if now >= self.terminal_at:
            return self.outcome.status
        # A REJECTED generation never processes: it stays PENDING until it is refused.
        if now < self.processing_at or self.outcome.status is Status.REJECTED:
            return Status.PENDING
        return Status.PROCESSING

    def to_wire(self, now: float, output_url: str | None, output_duration_s: float) -> dict[str, Any]:
        """The API's Generation object; `output_url` is used only once COMPLETED."""
        status = self.status_at(now)
        done = status is Status.COMPLETED
        failed = status in (Status.FAILED, Status.REJECTED)
        error_code = self.outcome.error_code if failed else None
        req = self.request
        return {
            "id": self.id,
            "createdAt": iso_time(self.created_at),
            "status": status.value,
            "model": req.model,
            "input": req.input,
            "options": req.options,
            "segments": req.segments,
            "webhookUrl": req.webhook_url,
            "outputFileName": req.output_file_name,
            "outputUrl": output_url if done else None,
            "outputDuration": output_duration_s if done else None,
            "segmentOutputUrl": None,
            "error": self.outcome.error if failed else None,
            "error_code": error_code,
            "errorCode": error_code,
            **req.extra,
        }


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used with a different request body."""


class ConcurrencyLimited(Exception):
    """Creating would exceed the plan's concurrent generations."""


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    generations_created: int = 0
    peak_in_flight: int = 0
    idempotency_replays: int = 0
    by_idempotency_key: dict[str, list[str]] = field(default_factory=dict)
    without_idempotency_key: int = 0
    webhooks: Counter[str] = field(default_factory=Counter)


class SyncSoState:
    """Generations, rate windows, idempotency keys, faults and counters of one simulated account."""

    def __init__(self, config: SyncSoSimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self.reset()

    def reset(self) -> None:
        """Forget everything but the config (the random source is re-seeded)."""
        self.rng = random.Random(self.config.seed)
        self.generations: dict[str, Generation] = {}
        self.limiter = SlidingWindow()
        self.idempotency = IdempotencyStore()
        self.faults: FaultQueue[HttpFault] = FaultQueue()
        self.outcomes: FaultQueue[OutcomeFault] = FaultQueue()
        self.stats = Stats()
        self._active_until: list[float] = []  # min-heap of terminal_at of possibly in-flight generations

    def configure(self, config: SyncSoSimConfig) -> None:
        """Apply a new config; it governs generations created from now on (a new seed re-seeds)."""
        if config.seed != self.config.seed:
            self.rng = random.Random(config.seed)
        self.config = config

    def admit(self, route: str, now: float) -> float | None:
        """Rate-limit one request: None if admitted, else the seconds until the budget has room."""
        cfg = self.config
        bucket = "create" if route == "create" else "other"
        limit = cfg.create_rate_limit if bucket == "create" else cfg.other_rate_limit
        return self.limiter.acquire(f"{cfg.api_key}:{bucket}", limit, cfg.rate_window_s, now)

    def in_flight(self, now: float) -> int:
        while self._active_until and self._active_until[0] <= now:
            heapq.heappop(self._active_until)
        return len(self._active_until)

    def submit(
        self, request: CreateRequest, key: str | None, fingerprint: str, now: float
    ) -> tuple[Generation, bool]:
        """Replay, refuse or create; return (generation, replayed)."""
        if key is not None:
            record = self.idempotency.lookup(key, now, self.config.idempotency_retention_s)
            if record is not None:
                if record.fingerprint != fingerprint:
                    raise IdempotencyConflict(key)
                self.stats.idempotency_replays += 1
                return self.generations[record.resource_id], True
        if self.in_flight(now) >= self.config.effective_concurrency:
            raise ConcurrencyLimited
        generation = self._create(request, key, now)
        if key is not None:
            self.idempotency.store(key, fingerprint, generation.id, now)
            self.stats.by_idempotency_key.setdefault(key, []).append(generation.id)
        else:
            self.stats.without_idempotency_key += 1
        return generation, False

    def _create(self, request: CreateRequest, key: str | None, now: float) -> Generation:
        cfg, rng = self.config, self.rng
        gen_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        pending_s = cfg.pending_s * (1 + rng.uniform(-cfg.duration_jitter, cfg.duration_jitter))
        processing_s = cfg.processing_s * (1 + rng.uniform(-cfg.duration_jitter, cfg.duration_jitter))
        outcome = self._draw_outcome()
        processing_at = now + pending_s
        terminal_at = processing_at if outcome.status is Status.REJECTED else processing_at + processing_s
        generation = Generation(
            gen_id, len(self.generations), now, request, processing_at, terminal_at, outcome, key
        )
        self.generations[gen_id] = generation
        self.stats.generations_created += 1
        if terminal_at > now:
            heapq.heappush(self._active_until, terminal_at)
        # In-flight only rises at creates, so the peak measured here is exact.
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight(now))
        return generation

    def _draw_outcome(self) -> Outcome:
        cfg, rng = self.config, self.rng
        roll = rng.random()  # drawn every time so a seed gives the same sequence with or without faults
        forced = self.outcomes.take("syncso.outcome")
        if forced is not None:
            return _forced_outcome(forced, rng)
        if roll < cfg.reject_share:
            code = rng.choice(sorted(REJECT_ERRORS))
            return Outcome(Status.REJECTED, code, REJECT_ERRORS[code])
        if roll < cfg.reject_share + cfg.fail_share:
            code = rng.choice(sorted(TRANSIENT_ERRORS))
            return Outcome(Status.FAILED, code, TRANSIENT_ERRORS[code])
        return Outcome(Status.COMPLETED)

    def newest_first(self) -> list[Generation]:
        # The dict keeps insertion order, which is seq order: no sort needed.
        return list(reversed(self.generations.values()))

    def newest_first_of(self, ids: frozenset[str]) -> list[Generation]:
        """The known generations among `ids`, newest first, without touching the others."""
        found = (self.generations.get(gen_id) for gen_id in ids)
        return sorted((g for g in found if g is not None), key=lambda g: g.seq, reverse=True)

    def sign(self, gen_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{gen_id}.{expires}".encode(), hashlib.sha256).hexdigest()

    def verify(self, gen_id: str, expires: int, signature: str, now: float) -> bool:
        return expires >= now and hmac.compare_digest(self.sign(gen_id, expires), signature)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The `/_sim/stats` view of this provider."""
        s = self.stats
        by_status = Counter(g.status_at(now).value for g in self.generations.values())
        return {
            "requests": {route: s.requests[route] for route in ROUTES},
            "responses": dict(sorted(s.responses.items())),
            "throttled": {code: s.throttled[code] for code in THROTTLE_CODES} | dict(s.throttled),
            "generations_created": s.generations_created,
            "generations_by_status": {status.value: by_status[status.value] for status in Status},
            "in_flight": self.in_flight(now),
            "peak_in_flight": s.peak_in_flight,
            "idempotency_replays": s.idempotency_replays,
            "generations_by_idempotency_key": {k: list(v) for k, v in s.by_idempotency_key.items()},
            "generations_without_idempotency_key": s.without_idempotency_key,
            "webhooks": {name: s.webhooks[name] for name in WEBHOOK_COUNTERS},
        }


def _forced_outcome(fault: OutcomeFault, rng: random.Random) -> Outcome:
    status = Status(fault.status)
    if status is Status.COMPLETED:
        return Outcome(status)
    catalogue = REJECT_ERRORS if status is Status.REJECTED else TRANSIENT_ERRORS
    code = fault.error_code or rng.choice(sorted(catalogue))
    return Outcome(status, code, fault.error or catalogue.get(code, f"Generation {status.value.lower()}."))
