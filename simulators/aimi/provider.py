"""HTTP surface of the simulated Aimi Sync API (written from the public reference, section 1).

Serves the flat "Surface A" paths (`POST /sync_*`) with one `taskid` through upload, analyses and
generate, and an `execid` per execution. Every API request passes the same gate: auth
(`Authorization: Bearer <api_key>`) → injected fault → handler. The files the status URLs name are
served unauthenticated under `/_sim/aimi/outputs/` and `/_sim/aimi/reports/`. Control routes (no gate,
not counted): `GET /_sim/aimi/uploads`, `GET /_sim/aimi/executions` and `GET /_sim/aimi/inputs` (per
execution, the digest of the uploaded video it was given and of its output: see `simulators.media`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from simulators.aimi.analysis import audio_analysis, video_analysis
from simulators.aimi.config import AimiSimConfig
from simulators.aimi.execution import MESSAGES, ExecStatus, Execution, mp4_bytes, zip_bytes
from simulators.aimi.generate import build_plan, read_generate
from simulators.aimi.responses import (
    CLIENT_GONE,
    UNAUTHORIZED,
    Rejected,
    fail,
    fault_response,
    ok,
    rejected,
    status_error,
    throttled,
)
from simulators.aimi.state import ROUTES, AimiState, OutcomeFault, Throttled
from simulators.aimi.upload import ChunkOutcome, chunk_headers, parse_init, read_capped
from simulators.events import EventLog
from simulators.media import output_view, wanted_ids
from simulators.provider_base import Handler, ProviderBase
from simulators.spec import section
from simulators.storm import StormKind, Strike
from simulators.webhook_delivery import WebhookQueue

if TYPE_CHECKING:
    from simulators.config import SimConfig

OUTPUTS, REPORTS = "/_sim/aimi/outputs", "/_sim/aimi/reports"


class _NoWebhooks(WebhookQueue[Any, None]):
    """Aimi Sync sends no webhooks; ProviderBase still cancels and closes a queue on reset and shutdown."""

    async def _deliver(self, due: None) -> None:
        return None


class AimiProvider(ProviderBase[AimiState, _NoWebhooks]):
    """The Aimi Sync routes and their state; one instance per simulator app."""

    name = "aimi"
    config_type = AimiSimConfig
    fault_routes = ROUTES
    outcome_fault = OutcomeFault
    id_param = "execid"

    def __init__(self, config: SimConfig, events: EventLog, clock: Callable[[], float] = time.time) -> None:
        state = AimiState(section(config, self.name, AimiSimConfig), clock)
        super().__init__(state, events, _NoWebhooks(self.name, state, events))

    def routes(self) -> list[BaseRoute]:
        e = self._api
        return [
            Route("/sync_upload_init", e("upload_init", self.upload_init), methods=["POST"]),
            Route("/sync_upload_chunk", e("upload_chunk", self.upload_chunk), methods=["POST"]),
            Route("/sync_upload_complete", e("upload_complete", self.upload_complete), methods=["POST"]),
            Route("/sync_video_analysis", e("video_analysis", self.video_analysis), methods=["POST"]),
            Route("/sync_audio_analysis", e("audio_analysis", self.audio_analysis), methods=["POST"]),
            Route("/sync_generate", e("generate", self.generate), methods=["POST"]),
            Route("/sync_execute", e("execute", self.execute), methods=["POST"]),
            Route("/sync_status", e("status", self.status), methods=["POST"]),
            Route(f"{OUTPUTS}/{{execid}}.mp4", e("download", self.download_mp4, auth=False)),
            Route(f"{OUTPUTS}/{{execid}}.zip", e("download", self.download_zip, auth=False)),
            Route(f"{REPORTS}/{{execid}}-results.json", e("report", self.results_report, auth=False)),
            Route(f"{REPORTS}/{{execid}}-failed.json", e("report", self.failed_report, auth=False)),
            Route("/_sim/aimi/uploads", self.list_uploads, methods=["GET"]),
            Route("/_sim/aimi/executions", self.list_executions, methods=["GET"]),
            Route("/_sim/aimi/inputs", self.list_inputs, methods=["GET"]),
        ]

    def _api(self, route: str, handler: Handler, auth: bool = True) -> Handler:
        """`_endpoint` around a handler whose Rejected and Throttled become `{"message"}` answers."""

        async def answered(request: Request) -> Response:
            try:
                return await handler(request)
            except Rejected as exc:
                return rejected(exc)
            except Throttled as exc:
                return throttled(exc.kind, self.state.config.max_executions, exc.wait_s)

        return self._endpoint(route, answered, auth)

    def _gate(self, route: str, request: Request, auth: bool) -> Response | None:
        if auth:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or token.strip() != self.state.config.api_key:
                self.state.stats.unauthorized += 1
                problem = "Invalid token" if token else "Authorization: Bearer <token> is required"
                return fail(401, problem, UNAUTHORIZED)
        fault = self.state.faults.take(f"aimi.{route}")
        return fault_response(fault) if fault is not None else None

    def storm_response(self, strike: Strike) -> Response:
        if strike.kind is StormKind.SERVER_ERROR:
            return status_error(strike.status or 500)
        # The status-poll cooldown is its rate limit, `max_executions` its concurrency limit.
        kind = "cooldown" if strike.kind is StormKind.RATE_LIMIT else "concurrency"
        return throttled(kind, self.state.config.max_executions, strike.retry_after_s)

    # Upload.
    async def upload_init(self, request: Request) -> Response:
        name, size, kind = parse_init(await _json_object(request))
        upload = self.state.create_upload(name, size, kind, self.state.clock())
        body = {"taskid": upload.taskid, "max_chunk_bytes": self.state.config.max_chunk_bytes}
        return ok(body, upload.taskid)

    async def upload_chunk(self, request: Request) -> Response:
        taskid, index = chunk_headers(request)
        state, cap = self.state, self.state.config.max_chunk_bytes
        upload = state.upload(taskid, completed=False)
        chunk = state.begin_chunk(upload, index)
        outcome: ChunkOutcome | None = None
        try:
            data = await read_capped(request, cap)
            if data is None:
                outcome = ChunkOutcome.TOO_LARGE
                raise Rejected(f"chunk {index} is larger than max_chunk_bytes ({cap})", 413)
            state.store_chunk(upload, chunk, data)
            # A test's hook: the chunk is stored, but its sender hears of it only later.
            if index >= state.config.chunk_delay_from:
                await asyncio.sleep(state.config.chunk_delay_s)
            gone = await request.is_disconnected()
            outcome = ChunkOutcome.UNANSWERED if gone else ChunkOutcome.ACKED
        except ClientDisconnect:
            outcome = ChunkOutcome.ABORTED
            return fail(499, "client disconnected before the chunk was read", CLIENT_GONE, taskid)
        finally:
            state.end_chunk(upload, chunk, outcome)
        return ok({"taskid": taskid, "chunk_index": index, "received": len(data)}, taskid)

    async def upload_complete(self, request: Request) -> Response:
        body = await _json_object(request)
        upload, total = self.state.upload(body.get("taskid")), body.get("total_chunks")
        if not isinstance(total, int) or isinstance(total, bool) or total < 1:
            raise Rejected("total_chunks must be a positive integer")
        if upload.completed and total != upload.total_chunks:
            raise Rejected(f"upload {upload.taskid} was already completed with {upload.total_chunks} chunks")
        if not upload.completed:
            upload.complete(total)
        return ok(upload.result(), upload.taskid)

    # Analyses.
    async def video_analysis(self, request: Request) -> Response:
        upload = self.state.upload((await _json_object(request)).get("taskid"), completed=True)
        await asyncio.sleep(self.state.config.analysis_s)
        if upload.analysis is None:
            upload.analysis = video_analysis(upload, self.state.config.bytes_per_second)
        return ok({"taskid": upload.taskid, "analysis": upload.analysis}, upload.taskid)

    async def audio_analysis(self, request: Request) -> Response:
        upload = self.state.upload((await _json_object(request)).get("taskid"), completed=True)
        if upload.analysis is None:
            raise Rejected(f"task {upload.taskid} needs its video analysis before the audio analysis")
        await asyncio.sleep(self.state.config.analysis_s)
        if upload.audio_analysis is None:
            upload.audio_analysis = audio_analysis(upload, upload.analysis["duration"])
        return ok({"taskid": upload.taskid, "audio_analysis": upload.audio_analysis}, upload.taskid)

    # Plans and executions.
    async def generate(self, request: Request) -> Response:
        form = await read_generate(request)
        upload = self.state.upload(form.taskid, completed=True)
        if upload.analysis is None:
            raise Rejected(f"task {upload.taskid} needs its video analysis before sync_generate")
        if form.options.needs_audio_analysis and upload.audio_analysis is None:
            raise Rejected("original_audio and original_audio_voiceover need the task's audio analysis first")
        audio = form.audio_analysis or upload.audio_analysis
        plan = build_plan(form.options, form.analysis, audio, self.state.new_id())
        return ok({"plan": plan}, upload.taskid)

    async def execute(self, request: Request) -> Response:
        body = await _json_object(request)
        plan = body.get("plan")
        if not isinstance(plan, dict) or not isinstance(plan.get("sections"), list) or not plan["sections"]:
            raise Rejected("plan.sections must be a non-empty array")
        upload = self.state.upload(body.get("taskid"), completed=True)
        execution = self.state.start_execution(upload, plan, self.state.clock())
        return ok({"execid": execution.execid}, execution.execid)

    async def status(self, request: Request) -> Response:
        execid = (await _json_object(request)).get("execid")
        if not isinstance(execid, str) or not execid:
            raise Rejected("execid is required")
        execution = self.state.executions.get(execid)
        if execution is None:
            return ok({"status": "inactive", "videourl": None, "message": MESSAGES["inactive"]}, execid)
        now = self.state.clock()
        self.state.poll(execution, now)
        return ok(execution.status_body(now, str(request.base_url)), execid)

    # Files behind the status URLs.
    def _ended(self, request: Request, status: ExecStatus) -> Execution:
        execution = self.state.executions.get(request.path_params["execid"])
        if execution is None or execution.status_at(self.state.clock()) is not status:
            raise Rejected(f"No such object: {request.url.path}", 404)
        return execution

    async def download_mp4(self, request: Request) -> Response:
        execution = self._ended(request, ExecStatus.FINISHED)
        if execution.multitrack:
            raise Rejected(f"No such object: {request.url.path}", 404)
        return _file(mp4_bytes(execution.execid, self.state.config.output_bytes), "video/mp4", request)

    async def download_zip(self, request: Request) -> Response:
        execution = self._ended(request, ExecStatus.FINISHED)
        if not execution.multitrack:
            raise Rejected(f"No such object: {request.url.path}", 404)
        return _file(zip_bytes(execution.execid, self.state.config.output_bytes), "application/zip", request)

    async def results_report(self, request: Request) -> Response:
        return JSONResponse(self._ended(request, ExecStatus.FINISHED).results_report())

    async def failed_report(self, request: Request) -> Response:
        return JSONResponse(self._ended(request, ExecStatus.ERROR).failed_report())

    # Control routes.
    async def list_uploads(self, request: Request) -> Response:
        """Every upload by taskid, with each chunk request's index, size, times and outcome, its SHA-256
        and the execids run on it."""
        runs: defaultdict[str, list[str]] = defaultdict(list)
        for execution in self.state.executions.values():
            runs[execution.taskid].append(execution.execid)
        return JSONResponse({taskid: u.view(runs[taskid]) for taskid, u in self.state.uploads.items()})

    async def list_executions(self, request: Request) -> Response:
        """Every execution by execid: taskid, status, times, polls and plan."""
        now = self.state.clock()
        return JSONResponse({execid: e.view(now) for execid, e in self.state.executions.items()})

    async def list_inputs(self, request: Request) -> Response:
        """Per execution (`?ids=` picks some): its taskid and status, the uploaded video it was given
        (`inputs.video`) and the digest of the file a download serves now (null until finished)."""
        state, ids = self.state, wanted_ids(request.query_params.getlist("ids"))
        now, size, digests = state.clock(), state.config.output_bytes, state.output_digests
        found: dict[str, Any] = {}
        for e in [e for e in state.executions.values() if ids is None or e.execid in ids]:
            status, output = e.status_at(now), None
            if status is ExecStatus.FINISHED:
                make = zip_bytes if e.multitrack else mp4_bytes
                kind = "zip" if e.multitrack else "mp4"
                blocks = functools.partial(_one_block, make, e.execid, size)
                digest = await digests.digest((e.execid, str(size), kind), blocks)
                output = output_view(f"{OUTPUTS}/{e.output_name}", digest)
            upload = state.uploads.get(e.taskid)
            inputs = {"video": upload.media().view()} if upload is not None else {}
            found[e.execid] = {"taskid": e.taskid, "status": status.value, "inputs": inputs, "output": output}
        return JSONResponse(found)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Rejected("body must be a JSON object")
    return body


def _one_block(make: Callable[[str, int], bytes], execid: str, size: int) -> list[bytes]:
    return [make(execid, size)]


def _file(content: bytes, media_type: str, request: Request) -> Response:
    name = request.url.path.rsplit("/", 1)[-1]
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(content, media_type=media_type, headers=headers)
