"""HTTP handlers of the batch API (reference 3.8) and the `GET /_sim/syncso/batches` control route.

`POST /v2/batch` checks, in order: plan (402) → form and file (400) → JSONL records (400) → dry run
(200 VALIDATED, nothing created) → batch concurrency (429) → create (201). The results of an ended
batch are reached through `GET /v2/batch/{id}/output`, a 302 to a signed JSONL file served without
the API key.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulators.provider_base import SimResponse
from simulators.syncso.batch import BATCH_TERMINAL, Batch, result_row
from simulators.syncso.batch_input import INVALID_JSONL, parse_batch_file
from simulators.syncso.generations import Generation
from simulators.syncso.query import QueryInvalid, parse_batch_query
from simulators.syncso.responses import nest_error
from simulators.syncso.state import ConcurrencyLimited, SyncSoState
from simulators.syncso.validate import CreateRejected, is_url
from simulators.syncso.webhooks import Payload, WebhookDispatcher

FILE_FIELDS = ("input", "file")
TEXT_FIELDS = ("webhook_url", "dry_run")
_BOOLS = {"true": True, "false": False}
_READ_CHUNK = 64 * 1024
PLAN_MESSAGE = "Batch processing is available on the Scale and Enterprise plans only"
CONCURRENCY_MESSAGE = (
    "Batch concurrency limit reached. Please wait for an existing batch to complete or upgrade your plan"
)


@dataclass(frozen=True)
class BatchForm:
    raw: bytes  # the JSONL file
    webhook_url: str | None
    dry_run: bool
    problems: list[str]  # of the text fields, reported with the file's


async def read_batch_form(request: Request, max_file_bytes: int) -> BatchForm:
    """The multipart form of `POST /v2/batch`; raise CreateRejected for a missing or oversized file."""
    try:
        async with request.form(max_files=len(FILE_FIELDS), max_fields=8) as form:
            problems: list[str] = []
            files = [(name, v) for name, v in form.multi_items() if isinstance(v, UploadFile)]
            fields = {name: v for name, v in form.multi_items() if isinstance(v, str)}
            unknown = ({name for name, _ in files} - set(FILE_FIELDS)) | (set(fields) - set(TEXT_FIELDS))
            problems += [f"property {name} should not exist" for name in sorted(unknown)]
            uploads = [upload for name, upload in files if name in FILE_FIELDS]
            if not uploads:
                raise CreateRejected([*problems, "input must be a JSONL file"], INVALID_JSONL)
            if len(uploads) > 1:
                problems.append("give one JSONL file, as input or as file")
            raw = await _read_capped(uploads[0], max_file_bytes)
    except (MultiPartException, HTTPException) as exc:
        message = exc.message if isinstance(exc, MultiPartException) else str(exc.detail)
        raise CreateRejected([message], INVALID_JSONL) from exc
    webhook_url = fields.get("webhook_url") or None
    if webhook_url is not None and not is_url(webhook_url):
        problems.append("webhook_url must be a URL address")
    dry_run = _BOOLS.get(fields.get("dry_run", "false").lower())
    if dry_run is None:
        problems.append("dry_run must be a boolean value")
    return BatchForm(raw, webhook_url, bool(dry_run), problems)


async def _read_capped(upload: UploadFile, max_bytes: int) -> bytes:
    chunks, size = [], 0
    while chunk := await upload.read(_READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            message = f"the input file must not be larger than {max_bytes} bytes"
            raise CreateRejected([message], "batch_file_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


class BatchRoutes:
    """Handlers of the routes batch_create, batch_get, batch_list, batch_output, batch_results."""

    def __init__(self, state: SyncSoState, webhooks: WebhookDispatcher) -> None:
        self.state = state
        self.webhooks = webhooks

    async def create(self, request: Request) -> Response:
        state, cfg = self.state, self.state.config
        if cfg.plan != "scale":  # the simulator's plans stop at scale
            return nest_error(402, PLAN_MESSAGE, "batch_plan_required")
        try:
            form = await read_batch_form(request, cfg.batch_max_file_bytes)
            records = parse_batch_file(
                form.raw, cfg.batch_max_records, state.assets.asset_problems, form.problems
            )
        except CreateRejected as exc:
            return nest_error(400, exc.message, exc.error_code)
        if form.dry_run:
            state.stats.batches_validated += 1
            return SimResponse({"status": "VALIDATED"})
        # No await from here to the response body: the concurrency check and creation are one step.
        now = state.clock()
        try:
            batch = state.create_batch(records, form.webhook_url, now)
        except ConcurrencyLimited:
            return nest_error(429, CONCURRENCY_MESSAGE, "concurrency_limit_reached")
        base_url = str(request.base_url)
        self._schedule_webhooks(batch, base_url)
        body = batch.to_wire(now, base_url)
        # A test's hook: the batch exists, but its caller hears of it only later.
        await asyncio.sleep(cfg.batch_response_delay_s)
        return SimResponse(body, 201, resource_id=batch.id)

    def _schedule_webhooks(self, batch: Batch, base_url: str) -> None:
        """The batch's own webhook, and [INF] each generation's whose payload has a `webhookUrl`."""
        if batch.webhook_url is not None:
            self.webhooks.schedule_batch(batch, batch.webhook_url, lambda at: batch.to_wire(at, base_url))
        for generation in batch.generations:
            url = generation.request.webhook_url
            if url is not None:
                self.webhooks.schedule(generation, url, self._generation_payload(generation, base_url))

    def _generation_payload(self, generation: Generation, base_url: str) -> Payload:
        return lambda at: self.state.generation_wire(generation, base_url, at)

    async def get_batch(self, request: Request) -> Response:
        batch_id = request.path_params["bid"]
        batch = self.state.batches.get(batch_id)
        if batch is None:
            return nest_error(404, f"Batch {batch_id} not found")
        return SimResponse(batch.to_wire(self.state.clock(), str(request.base_url)), resource_id=batch_id)

    async def list_batches(self, request: Request) -> Response:
        """Newest first, filtered by status and creation time."""
        try:
            query = parse_batch_query(request.query_params)
        except QueryInvalid as exc:
            return nest_error(400, exc.messages)
        now, base_url = self.state.clock(), str(request.base_url)
        listed = [
            batch.to_wire(now, base_url)
            for batch in reversed(self.state.batches.values())
            if (query.statuses is None or batch.status_at(now).value in query.statuses)
            and (query.created_after is None or batch.created_at > query.created_after)
            and (query.created_before is None or batch.created_at < query.created_before)
        ]
        return SimResponse(listed)

    async def output(self, request: Request) -> Response:
        """302 to the signed results file once the batch has ended, else 404."""
        batch_id = request.path_params["bid"]
        batch = self.state.batches.get(batch_id)
        if batch is None:
            return nest_error(404, f"Batch {batch_id} not found")
        now = self.state.clock()
        if batch.status_at(now) not in BATCH_TERMINAL:
            return nest_error(404, "Batch results are not available yet")
        query = self.state.signed_query(_results_key(batch_id), now)
        location = f"{request.base_url}_sim/syncso/batches/{batch_id}/results.jsonl?{query}"
        return Response(status_code=302, headers={"Location": location})

    async def results(self, request: Request) -> Response:
        """The signed results file: one JSON row per record, in file order [INF]."""
        batch_id = request.path_params["bid"]
        params, now = request.query_params, self.state.clock()
        signed = self.state.verify(
            _results_key(batch_id), params.get("expires", ""), params.get("signature", ""), now
        )
        if not signed:
            return nest_error(403, "Invalid or expired signature")
        batch = self.state.batches.get(batch_id)
        if batch is None or batch.status_at(now) not in BATCH_TERMINAL:
            return nest_error(404, f"Results of batch {batch_id} not found")
        base_url = str(request.base_url)
        rows = (
            result_row(request_id, g, now, self.state.output_url(g, base_url, now))
            for request_id, g in zip(batch.request_ids, batch.generations, strict=True)
        )
        body = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
        return Response(body, media_type="application/x-ndjson")

    async def lifecycles(self, request: Request) -> Response:
        """Control route: every batch with its request ids, generation ids and transition times."""
        now = self.state.clock()
        return JSONResponse([batch.lifecycle(now) for batch in self.state.batches.values()])


def _results_key(batch_id: str) -> str:
    return f"batch:{batch_id}"  # signs results apart from generation outputs
