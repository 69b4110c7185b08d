"""HTTP surface of the simulated DeepBrain AI Studios v3 API (written from the public reference, section 2).

Every path is under `/api/odin/v3/`. `POST .../auth/token` trades `{appId, userKey}` for a token; every
other API request passes the same gate: auth (`Authorization: <token>`, raw, no "Bearer") → injected
fault → handler. Outputs are served unauthenticated under `/_sim/aistudios/outputs/`. Control routes
(no gate, not counted): `GET /_sim/aistudios/projects` lists every project with its exports,
`GET /_sim/aistudios/inputs` the digest of each project's output (the API takes no media uploads, so
`inputs` is always empty; see `simulators.media`), and `POST /_sim/aistudios/expire-tokens` expires every
issued token now.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from simulators.aistudios.catalogue import dropdown_wire, models_wire
from simulators.aistudios.config import AIStudiosSimConfig
from simulators.aistudios.render import RenderState, output_blocks, output_stream, output_url
from simulators.aistudios.responses import (
    INVALID_CREDENTIALS,
    NOT_FOUND,
    RENDER_FAILED,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    fail,
    fault_response,
    ok,
    status_error,
)
from simulators.aistudios.state import ROUTES, AIStudiosState, OutcomeFault, Project, TooManyRenders
from simulators.aistudios.validate import (
    DEFAULT_NAME,
    RequestInvalid,
    validate_create,
    validate_delete,
    validate_export,
)
from simulators.aistudios.webhooks import WebhookDispatcher
from simulators.events import EventLog
from simulators.media import output_view, wanted_ids
from simulators.provider_base import ProviderBase
from simulators.spec import section
from simulators.storm import StormKind, Strike

if TYPE_CHECKING:
    from simulators.config import SimConfig

API = "/api/odin/v3"


class AIStudiosProvider(ProviderBase[AIStudiosState, WebhookDispatcher]):
    """The AI Studios routes and their state; one instance per simulator app."""

    name = "aistudios"
    config_type = AIStudiosSimConfig
    fault_routes = ROUTES
    outcome_fault = OutcomeFault
    id_param = "pid"

    def __init__(self, config: SimConfig, events: EventLog, clock: Callable[[], float] = time.time) -> None:
        state = AIStudiosState(section(config, self.name, AIStudiosSimConfig), clock)
        super().__init__(state, events, WebhookDispatcher(state, events))

    def routes(self) -> list[BaseRoute]:
        e = self._endpoint
        return [
            Route(f"{API}/auth/token", e("token", self.token, auth=False), methods=["POST"]),
            Route(f"{API}/auth", e("auth", self.auth), methods=["GET"]),
            Route(f"{API}/editor/project", e("create", self.create), methods=["POST"]),
            Route(f"{API}/editor/project", e("list", self.list_projects), methods=["GET"]),
            Route(f"{API}/editor/project", e("delete", self.delete), methods=["DELETE"]),
            Route(f"{API}/editor/project/export", e("export", self.export), methods=["POST"]),
            Route(f"{API}/editor/project/{{pid}}", e("project", self.get_project), methods=["GET"]),
            Route(f"{API}/editor/progress/{{pid}}", e("progress", self.progress), methods=["GET"]),
            Route(f"{API}/model", e("models", self.models), methods=["GET"]),
            Route(f"{API}/dropdown/models", e("dropdown", self.dropdown), methods=["GET"]),
            Route("/_sim/aistudios/outputs/{pid}.mp4", e("download", self.download, auth=False)),
            Route("/_sim/aistudios/projects", self.lifecycles, methods=["GET"]),
            Route("/_sim/aistudios/inputs", self.inputs, methods=["GET"]),
            Route("/_sim/aistudios/expire-tokens", self.expire_tokens, methods=["POST"]),
        ]

    def _gate(self, route: str, request: Request, auth: bool) -> Response | None:
        if auth:
            problem = self.state.token_problem(request.headers.get("authorization"), self.state.clock())
            if problem is not None:
                self.state.stats.unauthorized += 1
                return fail(401, UNAUTHORIZED, problem)
        fault = self.state.faults.take(f"aistudios.{route}")
        return fault_response(fault) if fault is not None else None

    def _project(self, request: Request) -> Project | Response:
        project_id = request.path_params["pid"]
        project = self.state.projects.get(project_id)
        return project if project is not None else fail(404, NOT_FOUND, f"Project {project_id} not found")

    def storm_response(self, strike: Strike) -> Response:
        if strike.kind is StormKind.SERVER_ERROR:
            return status_error(strike.status or 500)
        # The API's one 429 is the render limit's, without Retry-After: both storm 429s send it.
        return self._too_many()

    def _too_many(self) -> Response:
        limit = self.state.config.max_renders
        return fail(429, TOO_MANY_REQUESTS, f"Too many renders in progress (at most {limit})")

    # Handlers.
    async def token(self, request: Request) -> Response:
        body = await _json(request)
        credentials = body if isinstance(body, dict) else {}
        issued = self.state.issue_token(
            credentials.get("appId"), credentials.get("userKey"), self.state.clock()
        )
        if issued is None:
            return fail(401, INVALID_CREDENTIALS, "Invalid appId or userKey")
        return ok({"token": issued})

    async def auth(self, request: Request) -> Response:
        return ok({"isAuthenticated": True})

    async def create(self, request: Request) -> Response:
        try:
            project_request = validate_create(await _json(request))
        except RequestInvalid as exc:
            return fail(200, exc.code, exc.msg)
        try:
            project, render = self.state.create_project(
                project_request, str(request.base_url), self.state.clock()
            )
        except TooManyRenders:
            return self._too_many()
        if render is not None:
            self.webhooks.schedule(render)
        return ok({"projectId": project.id}, project_id=project.id)

    async def export(self, request: Request) -> Response:
        try:
            project_id, options = validate_export(await _json(request))
        except RequestInvalid as exc:
            return fail(200, exc.code, exc.msg)
        project = self.state.projects.get(project_id)
        if project is None:
            return fail(404, NOT_FOUND, f"Project {project_id} not found", project_id=project_id)
        try:
            render = self.state.start_render(project, options, str(request.base_url), self.state.clock())
        except TooManyRenders:
            return self._too_many()
        self.webhooks.schedule(render)
        # A test's hook: the render has started, but its caller hears of it only later.
        await asyncio.sleep(self.state.config.export_response_delay_s)
        return ok({"projectId": project.id}, project_id=project.id)

    async def progress(self, request: Request) -> Response:
        project = self._project(request)
        if not isinstance(project, Project):
            return project
        render, now = project.latest, self.state.clock()
        if render is None:
            return ok({"progress": 0, "state": "draft"}, project_id=project.id)
        state = render.state_at(now)
        if state is RenderState.FAILED:
            return fail(200, RENDER_FAILED, f"Rendering failed: {render.reason}", project_id=project.id)
        data: dict[str, Any] = {"progress": render.progress_at(now), "state": state.value}
        if state is RenderState.EXPORTED:
            data["downloadUrl"] = output_url(str(request.base_url), project.id)
        return ok(data, project_id=project.id)

    async def get_project(self, request: Request) -> Response:
        project = self._project(request)
        if not isinstance(project, Project):
            return project
        wire = project.to_wire(self.state.clock(), output_url(str(request.base_url), project.id))
        return ok({"project": wire}, project_id=project.id)

    async def list_projects(self, request: Request) -> Response:
        now, base_url = self.state.clock(), str(request.base_url)
        listed = []
        for project in self.state.projects.values():
            if not project.renders:
                continue  # a project never exported is not listed
            state = project.state_at(now)
            url = output_url(base_url, project.id) if state == RenderState.EXPORTED else None
            name = project.document.get("name", DEFAULT_NAME)
            listed.append({"id": project.id, "name": name, "state": state, "download_url": url})
        return ok(listed)

    async def delete(self, request: Request) -> Response:
        try:
            ids = validate_delete(await _json(request))
        except RequestInvalid as exc:
            return fail(200, exc.code, exc.msg)
        return ok({"deletedCount": self.state.delete(ids)})

    async def models(self, request: Request) -> Response:
        return ok(models_wire())

    async def dropdown(self, request: Request) -> Response:
        return ok(dropdown_wire())

    async def download(self, request: Request) -> Response:
        project = self._project(request)
        if not isinstance(project, Project):
            return project
        if not project.has_output(self.state.clock()):
            return fail(404, NOT_FOUND, f"Project {project.id} has no exported video", project_id=project.id)
        size = self.state.config.output_bytes
        headers = {
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{project.id}.mp4"',
        }
        return StreamingResponse(output_stream(project.id, size), media_type="video/mp4", headers=headers)

    # Control routes.
    async def lifecycles(self, request: Request) -> Response:
        """Every project (deleted ones excluded) with each export's times, progress and state."""
        now = self.state.clock()
        return JSONResponse([project.lifecycle(now) for project in self.state.projects.values()])

    async def inputs(self, request: Request) -> Response:
        """Control route: per project (`?ids=` picks some; deleted ones excluded), its state, its inputs
        (none: the API takes no media) and the digest of the output a download serves now (null until a
        render is exported)."""
        state, ids = self.state, wanted_ids(request.query_params.getlist("ids"))
        now, size, digests = state.clock(), state.config.output_bytes, state.output_digests
        found: dict[str, Any] = {}
        for project in [p for p in state.projects.values() if ids is None or p.id in ids]:
            output = None
            if project.has_output(now):
                blocks = functools.partial(output_blocks, project.id, size)
                digest = await digests.digest((project.id, str(size)), blocks)
                output = output_view(f"/_sim/aistudios/outputs/{project.id}.mp4", digest)
            found[project.id] = {"state": project.state_at(now), "inputs": {}, "output": output}
        return JSONResponse(found)

    async def expire_tokens(self, request: Request) -> Response:
        """Control route: every issued token expires now; answers how many were still valid."""
        return JSONResponse({"expired": self.state.expire_tokens(self.state.clock())})


async def _json(request: Request) -> Any:
    """The decoded JSON body, or None when it is empty or not JSON."""
    try:
        return json.loads(await request.body())
    except ValueError:
        return None
