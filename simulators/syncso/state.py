"""State of the simulated sync.so API: generations, the media library, batches, admission rules.

No HTTP here. Lifecycles are functions of time fixed at creation (see `generations` and `batch`), so
nothing runs in the background. All methods are synchronous and are called from the single event
loop, so a check followed by a mutation is atomic.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulators.faults import FaultQueue, HttpFault
from simulators.limits import IdempotencyStore, SlidingWindow
from simulators.media import OutputDigests
from simulators.syncso.assets import AssetLibrary, ReceivedFile
from simulators.syncso.batch import Batch, BatchStatus
from simulators.syncso.batch_input import BatchRecord
from simulators.syncso.config import SyncSoSimConfig
from simulators.syncso.fetch import Fetched, unreachable
from simulators.syncso.generations import (
    REJECT_ERRORS,
    TRANSIENT_ERRORS,
    Generation,
    Outcome,
    OutcomeFault,
    Status,
    forced_outcome,
)
from simulators.syncso.input_faults import InputFaults, config_failure, matches_any
from simulators.syncso.inputs import Inputs, media_inputs
from simulators.syncso.validate import CreateRejected, CreateRequest, validate_create

ROUTES = (
    "create",
    "get",
    "costs",
    "list",
    "models",
    "download",
    "estimate",
    "asset_upload",
    "asset_put",
    "asset_file",
    "asset_create",
    "assets_list",
    "asset_get",
    "batch_create",
    "batch_get",
    "batch_list",
    "batch_output",
    "batch_results",
)
THROTTLE_CODES = ("rate_limit_exceeded", "concurrency_limit_reached")
# scheduled = lost + deliveries fired (or still pending); sent = POSTs made (a duplicate is two);
# delivered (2xx) + refused (other statuses) + errors (no answer) = sent once none is in flight.
WEBHOOK_COUNTERS = ("scheduled", "sent", "delivered", "refused", "errors", "lost", "duplicated")
# Rate-limit window of each route that has its own; every other authenticated route spends "other".
RATE_BUCKETS = {"create": "create", "asset_upload": "upload"}


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used with a different request body."""


class ConcurrencyLimited(Exception):
    """Creating would exceed the plan's concurrent generations (or concurrent batches)."""


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    generations_created: int = 0  # through POST /v2/generate; batch generations are counted apart
    peak_in_flight: int = 0
    idempotency_replays: int = 0
    by_idempotency_key: dict[str, list[str]] = field(default_factory=dict)
    without_idempotency_key: int = 0
    webhooks: Counter[str] = field(default_factory=Counter)
    estimates: int = 0
    batches_validated: int = 0
    batch_generations: int = 0
    peak_batches_in_flight: int = 0


class SyncSoState:
    """Everything one simulated account holds: generations, assets, batches, limits, faults, counters."""

    def __init__(self, config: SyncSoSimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self.reset()

    def reset(self) -> None:
        """Forget everything but the config (the random sources are re-seeded)."""
        self.rng = random.Random(self.config.seed)
        # Asset and batch ids come from their own source so they never shift the generation draws.
        self.id_rng = random.Random(_id_seed(self.config.seed))
        self.generations: dict[str, Generation] = {}
        self.assets = AssetLibrary(self.id_rng)
        self.batches: dict[str, Batch] = {}
        self.limiter = SlidingWindow()
        self.idempotency = IdempotencyStore()
        self.faults: FaultQueue[HttpFault] = FaultQueue()
        self.outcomes: FaultQueue[OutcomeFault] = FaultQueue()
        self.input_faults = InputFaults()
        self.output_digests = OutputDigests()
        self.stats = Stats()
        self._active_until: list[float] = []  # min-heap of terminal_at of possibly in-flight generations

    def configure(self, config: SyncSoSimConfig) -> None:
        """Apply a new config; it governs what is created from now on (a new seed re-seeds)."""
        if config.seed != self.config.seed:
            self.rng.seed(config.seed)
            self.id_rng.seed(_id_seed(config.seed))
        self.config = config

    def admit(self, route: str, now: float) -> float | None:
        """Rate-limit one request: None if admitted, else the seconds until the budget has room."""
        cfg = self.config
        bucket = RATE_BUCKETS.get(route, "other")
        limits = {"create": cfg.create_rate_limit, "upload": cfg.upload_rate_limit}
        limit = limits.get(bucket, cfg.other_rate_limit)
        return self.limiter.acquire(f"{cfg.api_key}:{bucket}", limit, cfg.rate_window_s, now)

    # Generations.
    def check_create(self, body: Any) -> CreateRequest:
        """`validate_create` plus `check_assets`; raise CreateRejected."""
        request = validate_create(body)
        self.check_assets(request)
        return request

    def check_assets(self, request: CreateRequest) -> None:
        """Each input `assetId` must name a media-library asset of the item's type (else 400)."""
        problems = self.assets.asset_problems(request.input)
        if problems:
            raise CreateRejected(problems)

    def in_flight(self, now: float) -> int:
        while self._active_until and self._active_until[0] <= now:
            heapq.heappop(self._active_until)
        return len(self._active_until)

    def submit(
        self,
        request: CreateRequest,
        key: str | None,
        fingerprint: str,
        now: float,
        *,
        parts: Mapping[str, ReceivedFile] | None = None,
        fetched: Mapping[str, Fetched] | None = None,
    ) -> tuple[Generation, bool]:
        """Replay, refuse or create; return (generation, replayed).

        `parts` are the create call's multipart files by asset id, `fetched` its fetched input URLs.
        """
        if key is not None:
            record = self.idempotency.lookup(key, now, self.config.idempotency_retention_s)
            if record is not None:
                if record.fingerprint != fingerprint:
                    raise IdempotencyConflict(key)
                self.stats.idempotency_replays += 1
                return self.generations[record.resource_id], True
        if self.in_flight(now) >= self.config.effective_concurrency:
            raise ConcurrencyLimited
        generation = self._create(request, key, now, media_inputs(request.input, self.assets, parts, fetched))
        self.stats.generations_created += 1
        heapq.heappush(self._active_until, generation.terminal_at)
        # In-flight only rises at creates, so the peak measured here is exact.
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight(now))
        if key is not None:
            self.idempotency.store(key, fingerprint, generation.id, now)
            self.stats.by_idempotency_key.setdefault(key, []).append(generation.id)
        else:
            self.stats.without_idempotency_key += 1
        return generation, False

    def _create(
        self, request: CreateRequest, key: str | None, created_at: float, inputs: Inputs
    ) -> Generation:
        cfg, rng = self.config, self.rng
        gen_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        pending_s = cfg.pending_s * (1 + rng.uniform(-cfg.duration_jitter, cfg.duration_jitter))
        processing_s = cfg.processing_s * (1 + rng.uniform(-cfg.duration_jitter, cfg.duration_jitter))
        outcome = self._draw_outcome(inputs)
        processing_at = created_at + pending_s
        terminal_at = processing_at if outcome.status is Status.REJECTED else processing_at + processing_s
        generation = Generation(
            gen_id,
            len(self.generations),
            created_at,
            request,
            processing_at,
            terminal_at,
            outcome,
            key,
            inputs,
        )
        self.generations[gen_id] = generation
        return generation

    def _draw_outcome(self, inputs: Inputs) -> Outcome:
        """An input that could not be fetched, then input-keyed rules (queued, then the config's), then
        a queued outcome fault, then the shares."""
        cfg, rng = self.config, self.rng
        roll = rng.random()  # drawn every time so a seed gives the same sequence with or without faults
        refused = unreachable(inputs)
        if refused is not None:
            return refused
        rule = self.input_faults.take(inputs)
        if rule is not None:
            return rule.outcome()
        if matches_any(inputs, cfg.fail_input_contains, cfg.fail_input_sha256):
            return config_failure()
        forced = self.outcomes.take("syncso.outcome")
        if forced is not None:
            return forced_outcome(forced, rng)
        if roll < cfg.reject_share:
            code = rng.choice(sorted(REJECT_ERRORS))
            return Outcome(Status.REJECTED, code, REJECT_ERRORS[code])
        if roll < cfg.reject_share + cfg.fail_share:
            code = rng.choice(sorted(TRANSIENT_ERRORS))
            return Outcome(Status.FAILED, code, TRANSIENT_ERRORS[code])
        return Outcome(Status.COMPLETED)

    def visible(self, gen_id: str, now: float) -> Generation | None:
        """The generation if it exists by `now` (a batch's jobs appear only once created)."""
        generation = self.generations.get(gen_id)
        return generation if generation is not None and generation.exists_at(now) else None

    def newest_first(self, now: float) -> list[Generation]:
        # The dict keeps insertion order, which is seq order: no sort needed. [INF] A batch's jobs take
        # their seq at batch creation, up to batch_pending_s before their createdAt.
        return [g for g in reversed(self.generations.values()) if g.exists_at(now)]

    def newest_first_of(self, ids: frozenset[str], now: float) -> list[Generation]:
        """The known generations among `ids`, newest first, without touching the others."""
        found = (self.visible(gen_id, now) for gen_id in ids)
        return sorted((g for g in found if g is not None), key=lambda g: g.seq, reverse=True)

    # Batches.
    def batches_in_flight(self, now: float) -> int:
        return sum(1 for batch in self.batches.values() if batch.active_at(now))

    def create_batch(self, records: Sequence[BatchRecord], webhook_url: str | None, now: float) -> Batch:
        """Create a batch and its generations; raise ConcurrencyLimited at the batch concurrency cap.

        Batch generations skip the generation concurrency limit (reference 3.8), so they never enter
        the in-flight heap.
        """
        cfg = self.config
        if self.batches_in_flight(now) >= cfg.batch_concurrency:
            raise ConcurrencyLimited
        jobs_at = now + cfg.batch_pending_s
        generations = tuple(
            self._create(record.request, None, jobs_at, media_inputs(record.request.input, self.assets))
            for record in records
        )
        self.stats.batch_generations += len(generations)
        batch_id = f"batch_{self.id_rng.getrandbits(96):024x}"
        batch = Batch.of(
            batch_id,
            seq=len(self.batches),
            created_at=now,
            request_ids=tuple(record.request_id for record in records),
            generations=generations,
            webhook_url=webhook_url,
        )
        self.batches[batch.id] = batch
        self.stats.peak_batches_in_flight = max(
            self.stats.peak_batches_in_flight, self.batches_in_flight(now)
        )
        return batch

    # Signed URLs (outputs and batch results): the signature covers the resource key and the expiry.
    def signed_query(self, key: str, now: float) -> str:
        expires = int(now + self.config.output_url_ttl_s)
        return f"expires={expires}&signature={self.sign(key, expires)}"

    def sign(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key}.{expires}".encode(), hashlib.sha256).hexdigest()

    def verify(self, key: str, expires: str, signature: str, now: float) -> bool:
        if not expires.isdigit():
            return False
        return int(expires) >= now and hmac.compare_digest(self.sign(key, int(expires)), signature)

    def output_url(self, generation: Generation, base_url: str, now: float) -> str | None:
        """The signed download URL of a COMPLETED generation, else None; `base_url` ends in "/"."""
        if generation.status_at(now) is not Status.COMPLETED:
            return None
        return f"{base_url}_sim/syncso/outputs/{generation.id}.mp4?{self.signed_query(generation.id, now)}"

    def generation_wire(self, generation: Generation, base_url: str, now: float) -> dict[str, Any]:
        """The Generation object as the API serves it at `now`."""
        url = self.output_url(generation, base_url, now)
        return generation.to_wire(now, url, self.config.output_duration_s)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The `/_sim/stats` view of this provider."""
        s = self.stats
        by_status = Counter(g.status_at(now).value for g in self.generations.values() if g.exists_at(now))
        batches_by_status = Counter(b.status_at(now).value for b in self.batches.values())
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
            "estimates": s.estimates,
            "assets_created": len(self.assets.by_id),
            "uploads_completed": self.assets.uploads_completed,
            "batches_created": len(self.batches),
            "batches_validated": s.batches_validated,
            "batch_generations": s.batch_generations,
            "batches_by_status": {status.value: batches_by_status[status.value] for status in BatchStatus},
            "batches_in_flight": self.batches_in_flight(now),
            "peak_batches_in_flight": s.peak_batches_in_flight,
        }


def _id_seed(seed: int | None) -> str | None:
    return None if seed is None else f"{seed}:ids"
