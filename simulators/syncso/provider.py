"""HTTP surface of the simulated sync.so v2 API (written from the public reference, not from genq's client).

Every provider request passes the same gate: URL length → auth (`x-api-key`) → injected fault → rate
limit. `POST /v2/generate` then checks, in order: Idempotency-Key format → body (files sent multipart
join the media library once it is valid) → asset ids → idempotency replay or conflict → plan
concurrency → create (and arms the webhook). Output files are served unauthenticated behind signed
URLs. The estimate, asset and batch handlers live in `estimate`, `assets_api` and `batch_api`; this
module wires every route through the gate. Control routes (no gate, not counted):
`GET /_sim/syncso/generations` lists every generation's lifecycle times, `GET /_sim/syncso/batches`
every batch's, `GET /_sim/syncso/inputs` what each generation was given and the digest of its output
(see `simulators.media`, `simulators.syncso.inputs`).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from simulators.events import EventLog
from simulators.limits import retry_after_header
from simulators.media import MediaInput, output_view, wanted_ids
from simulators.provider_base import ProviderBase, SimResponse
from simulators.spec import section
from simulators.storm import StormKind, Strike
from simulators.syncso.assets import AssetType
from simulators.syncso.assets_api import AssetRoutes
from simulators.syncso.batch_api import BatchRoutes
from simulators.syncso.config import SyncSoSimConfig
from simulators.syncso.estimate import EstimateRoutes, billed_seconds
from simulators.syncso.fetch import Fetched, fetch_digest, urls_to_fetch
from simulators.syncso.generations import TERMINAL, Generation, OutcomeFault, Status
from simulators.syncso.input_faults import InputFault
from simulators.syncso.output import output_blocks
from simulators.syncso.query import ListQuery, QueryInvalid, parse_list_query, parse_wait
from simulators.syncso.responses import (
    concurrency_limited,
    fault_response,
    nest_error,
    rate_limited,
    server_error,
    uri_too_long,
)
from simulators.syncso.state import ROUTES, ConcurrencyLimited, IdempotencyConflict, SyncSoState
from simulators.syncso.upload import CreateBody, read_create_body
from simulators.syncso.validate import CreateRejected, CreateRequest, validate_create
from simulators.syncso.webhooks import WebhookDispatcher

if TYPE_CHECKING:
    from simulators.config import SimConfig

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._~-]{1,128}")
MAX_NAP_S = 0.25  # longest sleep of a long-poll between checks
MODELS = [
    ("sync-3", "lipsync", "3.0.0", "Most capable lipsync model, up to 4K; takes a video or an image."),
    ("lipsync-2-pro", "lipsync", "2.0.0", "Premium lipsync-2 with finer detail (beards, teeth)."),
    ("lipsync-2", "lipsync", "2.0.0", "Zero-shot lipsync that keeps the speaker's style."),
    ("lipsync-1.9.0-beta", "lipsync", "1.9.0-beta", "Fast lipsync for quick previews."),
    ("react-1", "react", "1.0.0", "Re-animates expressions and head movement to match the audio (≤ 15 s)."),
]


class SyncSoProvider(ProviderBase[SyncSoState, WebhookDispatcher]):
    """The sync.so routes and their state; one instance per simulator app."""

    name = "syncso"
    config_type = SyncSoSimConfig
    fault_routes = ROUTES
    outcome_fault = OutcomeFault
    id_param = "gid"

    def __init__(self, config: SimConfig, events: EventLog, clock: Callable[[], float] = time.time) -> None:
        state = SyncSoState(section(config, self.name, SyncSoSimConfig), clock)
        super().__init__(state, events, WebhookDispatcher(state, events))
        self.estimates = EstimateRoutes(state)
        self.assets = AssetRoutes(state)
        self.batches = BatchRoutes(state, self.webhooks)

    def routes(self) -> list[BaseRoute]:
        e, est, assets, batches = self._endpoint, self.estimates, self.assets, self.batches
        return [
            Route("/v2/generate", e("create", self.create), methods=["POST"]),
            Route("/v2/generate/{gid}", e("get", self.get_generation), methods=["GET"]),
            Route("/v2/generate/{gid}/costs", e("costs", self.costs), methods=["GET"]),
            Route("/v2/generations", e("list", self.list_generations), methods=["GET"]),
            Route("/v2/models", e("models", self.list_models), methods=["GET"]),
            Route("/_sim/syncso/outputs/{gid}.mp4", e("download", self.download, auth=False)),
            # Cost estimates.
            Route("/v2/analyze/cost", e("estimate", est.analyze_cost), methods=["POST"]),
            Route("/v2/generations/estimate", e("estimate", est.estimate), methods=["POST"]),
            Route("/v2/generate/estimate-cost", e("estimate", est.estimate), methods=["POST"]),
            # Media library.
            Route("/v2/assets/upload", e("asset_upload", assets.start_upload), methods=["POST"]),
            Route("/v2/assets", e("asset_create", assets.create), methods=["POST"]),
            Route("/v2/assets", e("assets_list", assets.list_assets), methods=["GET"]),
            Route("/v2/assets/{aid}", e("asset_get", assets.get_asset), methods=["GET"]),
            Route(
                "/_sim/syncso/uploads/{token}", e("asset_put", assets.put_upload, auth=False), methods=["PUT"]
            ),
            Route("/_sim/syncso/files/{token}/{name:path}", e("asset_file", assets.get_file, auth=False)),
            # Batches.
            Route("/v2/batch", e("batch_create", batches.create), methods=["POST"]),
            Route("/v2/batch", e("batch_list", batches.list_batches), methods=["GET"]),
            Route("/v2/batch/{bid}", e("batch_get", batches.get_batch), methods=["GET"]),
            Route("/v2/batch/{bid}/output", e("batch_output", batches.output), methods=["GET"]),
            Route(
                "/_sim/syncso/batches/{bid}/results.jsonl", e("batch_results", batches.results, auth=False)
            ),
            # Control routes.
            Route("/_sim/syncso/generations", self.lifecycles, methods=["GET"]),
            Route("/_sim/syncso/batches", batches.lifecycles, methods=["GET"]),
            Route("/_sim/syncso/inputs", self.inputs, methods=["GET"]),
        ]

    # Control surface hooks: input-keyed failures queue with the other faults.
    def add_fault(self, raw: dict[str, Any]) -> None:
        if raw.get("route") == f"{self.name}.input":
            self.state.input_faults.push(InputFault.model_validate(raw))
            return
        super().add_fault(raw)

    def pending_faults(self) -> dict[str, Any]:
        return super().pending_faults() | self.state.input_faults.pending()

    def clear_faults(self) -> None:
        super().clear_faults()
        self.state.input_faults.clear()

    def _gate(self, route: str, request: Request, auth: bool) -> Response | None:
        state = self.state
        if _target_bytes(request) > state.config.max_url_bytes:
            return uri_too_long()
        if auth and request.headers.get("x-api-key") != state.config.api_key:
            return nest_error(401, "Unauthorized")
        fault = state.faults.take(f"syncso.{route}")
        if fault is not None:
            return fault_response(fault)
        wait_s = state.admit(route, state.clock()) if auth else None
        return None if wait_s is None else self._rate_limited(wait_s)

    def _rate_limited(self, wait_s: float) -> Response:
        send_retry_after = self.state.config.send_retry_after_on_rate_limit
        return rate_limited({"Retry-After": retry_after_header(wait_s)} if send_retry_after else None)

    def storm_response(self, strike: Strike) -> Response:
        if strike.kind is StormKind.RATE_LIMIT:
            return self._rate_limited(strike.retry_after_s)
        if strike.kind is StormKind.CONCURRENCY:
            return concurrency_limited(self.state.config.effective_concurrency)
        return server_error(strike.status or 500)

    def _record(self, route: str, request: Request, response: Response) -> None:
        super()._record(route, request, response)
        if response.status_code == 429 and isinstance(response, SimResponse) and response.error_code:
            self.state.stats.throttled[response.error_code] += 1

    def _wire(self, generation: Generation, base_url: str, now: float) -> dict[str, Any]:
        """The Generation object; `base_url` (ending in "/") roots the signed output URL."""
        return self.state.generation_wire(generation, base_url, now)

    # Handlers.
    async def create(self, request: Request) -> Response:
        keys = request.headers.getlist("idempotency-key")
        if len(keys) > 1 or (keys and not IDEMPOTENCY_KEY.fullmatch(keys[0])):
            message = "Idempotency-Key must be one header of 1-128 characters from [A-Za-z0-9._~-]"
            return nest_error(400, message, "INVALID_IDEMPOTENCY_KEY")
        key = keys[0] if keys else None
        try:
            received = await read_create_body(request, self.state.config.max_upload_bytes)
            create_request = self._accept(received, str(request.base_url))
        except CreateRejected as exc:
            return nest_error(exc.status, exc.message, exc.error_code)
        fetched = await self._fetch_inputs(create_request)
        parts = {file.asset_id: file for file in received.files}
        # No await from here on: replay check, concurrency check and creation are one atomic step.
        now = self.state.clock()
        try:
            generation, replayed = self.state.submit(
                create_request, key, received.fingerprint, now, parts=parts, fetched=fetched
            )
        except IdempotencyConflict:
            message = "Idempotency-Key was already used with a different request body"
            return nest_error(409, message, "IDEMPOTENCY_KEY_REUSED")
        except ConcurrencyLimited:
            return concurrency_limited(self.state.config.effective_concurrency)
        base_url = str(request.base_url)
        body = self._wire(generation, base_url, now)
        if replayed:
            return SimResponse(body, 200, {"Idempotent-Replayed": "true"}, resource_id=generation.id)
        webhook_url = generation.request.webhook_url
        if webhook_url is not None:
            self.webhooks.schedule(generation, webhook_url, lambda at: self._wire(generation, base_url, at))
        return SimResponse(body, 201, resource_id=generation.id)

    def _accept(self, received: CreateBody, base_url: str) -> CreateRequest:
        """Validate the body; its files (multipart) join the media library before the assetId check."""
        state, cfg = self.state, self.state.config
        create_request = validate_create(received.body)
        for file in received.files:
            if file.size > cfg.asset_max_bytes:
                message = f"{file.kind.value.lower()} is larger than the plan's {cfg.asset_max_bytes} bytes"
                raise CreateRejected(message, "file_size_exceeds_plan_limit", 422)
        now = state.clock()
        for file in received.files:
            duration_s = None if file.kind is AssetType.IMAGE else cfg.media_duration_s
            state.assets.add_file(file, duration_s, base_url, now)
        state.check_assets(create_request)
        return create_request

    async def _fetch_inputs(self, create_request: CreateRequest) -> dict[str, Fetched]:
        """With `fetch_input_urls`, GET every URL input the simulator does not hold, hashing what comes."""
        cfg = self.state.config
        urls = urls_to_fetch(create_request.input, self.state.assets) if cfg.fetch_input_urls else []
        if not urls:
            return {}
        async with httpx.AsyncClient(timeout=cfg.input_fetch_timeout_s, follow_redirects=True) as client:
            found = await asyncio.gather(*(fetch_digest(client, url, cfg.asset_max_bytes) for url in urls))
        return dict(zip(urls, found, strict=True))

    async def get_generation(self, request: Request) -> Response:
        gen_id = request.path_params["gid"]
        try:
            wait_timeout_s = parse_wait(request.query_params)
        except QueryInvalid as exc:
            return nest_error(400, exc.messages)
        generation = self.state.visible(gen_id, self.state.clock())
        if generation is not None and wait_timeout_s is not None:
            generation = await self._wait_terminal(generation, wait_timeout_s)
        if generation is None:
            return nest_error(404, f"Generation {gen_id} not found")
        headers = None
        if wait_timeout_s is not None:
            timeout = f"{wait_timeout_s:g}"
            headers = {
                "Retry-After": "2",
                "X-Sync-Wait-Mode": "long_poll",
                "X-Sync-Wait-Timeout-Seconds": timeout,
            }
        body = self._wire(generation, str(request.base_url), self.state.clock())
        return SimResponse(body, 200, headers, resource_id=gen_id)

    async def costs(self, request: Request) -> Response:
        """`GET /v2/generate/{id}/costs`: the generation's recorded cost. [INF] A COMPLETED generation costs
        its billed seconds at its model's price (what the estimate says); one that FAILED or was REJECTED
        costs nothing; one not yet ended is `pending` with no total."""
        gen_id = request.path_params["gid"]
        generation = self.state.visible(gen_id, self.state.clock())
        if generation is None:
            return nest_error(404, f"Generation {gen_id} not found")
        status = generation.status_at(self.state.clock())
        price = self.state.config.price_per_s.get(generation.request.model)
        if status is Status.COMPLETED and price is not None:
            seconds = billed_seconds(generation.request, self.state.config.media_duration_s)
            availability, total = "complete", f"{seconds * price:.4f}"
        elif status in (Status.FAILED, Status.REJECTED):
            availability, total = "complete", "0.0000"
        else:
            availability, total = ("pending" if price is not None else "unavailable"), None
        body = {"generationId": gen_id, "generationStatus": status.value, "currency": "USD",
                "availability": availability, "totalCostUsd": total, "knownSubtotalUsd": total,
                "retryAfterSeconds": 5 if availability == "pending" else None, "components": []}  # fmt: skip
        return SimResponse(body, 200, resource_id=gen_id)

    async def _wait_terminal(self, generation: Generation, timeout_s: float) -> Generation | None:
        """Long-poll: return once terminal or at the deadline; None if a reset removed the generation."""
        state = self.state
        deadline = state.clock() + timeout_s
        while True:
            now = state.clock()
            if state.generations.get(generation.id) is not generation:
                return None
            if generation.status_at(now) in TERMINAL or now >= deadline:
                return generation
            # Short naps keep a reset or a server shutdown from waiting out a full poll.
            await asyncio.sleep(max(min(generation.terminal_at, deadline, now + MAX_NAP_S) - now, 0.001))

    async def list_generations(self, request: Request) -> Response:
        try:
            query = parse_list_query(request.query_params)
        except QueryInvalid as exc:
            return nest_error(400, exc.messages)
        now = self.state.clock()
        selected = self._select(query, now)
        if selected is None:
            return nest_error(400, ["cursor must be the id of a generation"])
        base_url = str(request.base_url)
        return SimResponse([self._wire(g, base_url, now) for g in selected])

    def _select(self, query: ListQuery, now: float) -> list[Generation] | None:
        state = self.state
        # With `ids`, look each one up: a page of ids must not cost a pass over every generation.
        items = state.newest_first(now) if query.ids is None else state.newest_first_of(query.ids, now)
        if query.cursor is not None:
            anchor = state.generations.get(query.cursor)
            if anchor is None:
                return None
            items = [g for g in items if g.seq < anchor.seq]
        if query.statuses is not None:
            items = [g for g in items if g.status_at(now).value in query.statuses]
        return items[: query.limit] if query.limit is not None else items

    async def list_models(self, request: Request) -> Response:
        models = [
            {"id": mid, "name": mid, "type": kind, "version": version, "description": text}
            for mid, kind, version, text in MODELS
        ]
        return SimResponse(models)

    async def download(self, request: Request) -> Response:
        gen_id = request.path_params["gid"]
        params, now = request.query_params, self.state.clock()
        if not self.state.verify(gen_id, params.get("expires", ""), params.get("signature", ""), now):
            return nest_error(403, "Invalid or expired signature")
        generation = self.state.generations.get(gen_id)
        if generation is None or generation.status_at(now) is not Status.COMPLETED:
            return nest_error(404, f"Output of generation {gen_id} not found")
        size = self.state.config.output_bytes
        name = generation.request.output_file_name or gen_id
        headers = {"Content-Length": str(size), "Content-Disposition": f'attachment; filename="{name}.mp4"'}
        return StreamingResponse(_stream_output(generation, size), media_type="video/mp4", headers=headers)

    async def lifecycles(self, request: Request) -> Response:
        """Control route: when each generation was created, started processing and became terminal."""
        now = self.state.clock()
        return SimResponse(
            [
                {
                    "id": g.id,
                    "status": g.status_at(now).value,
                    "created_at": g.created_at,
                    # A REJECTED generation never processes.
                    "processing_at": None if g.outcome.status is Status.REJECTED else g.processing_at,
                    "terminal_at": g.terminal_at,
                    "webhook_url": g.request.webhook_url,
                }
                for g in self.state.generations.values()
            ]
        )

    async def inputs(self, request: Request) -> Response:
        """Control route: per generation (`?ids=` picks some), its status, what each input was given and
        the digest of the output a download serves now (null until COMPLETED)."""
        state, ids = self.state, wanted_ids(request.query_params.getlist("ids"))
        now, size, digests = state.clock(), state.config.output_bytes, state.output_digests
        chosen = [g for g in state.generations.values() if (ids is None or g.id in ids) and g.exists_at(now)]
        found: dict[str, Any] = {}
        for g in chosen:
            status, output = g.status_at(now), None
            if status is Status.COMPLETED:
                blocks = functools.partial(output_blocks, g.id, g.inputs, size)
                digest = await digests.digest((g.id, str(size)), blocks)
                output = output_view(f"/_sim/syncso/outputs/{g.id}.mp4", digest)
            found[g.id] = {"status": status.value, "inputs": _inputs_view(g.inputs), "output": output}
        return JSONResponse(found)


def _target_bytes(request: Request) -> int:
    """Length of the request target as sent: raw path, plus `?` and the raw query string if any."""
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    query: bytes = request.scope.get("query_string", b"")
    return len(raw_path) + (1 + len(query) if query else 0)


async def _stream_output(generation: Generation, size: int) -> AsyncIterator[bytes]:
    for block in output_blocks(generation.id, generation.inputs, size):
        yield block


def _inputs_view(inputs: tuple[tuple[str, MediaInput], ...]) -> dict[str, Any]:
    return {field: media.view() for field, media in inputs}
