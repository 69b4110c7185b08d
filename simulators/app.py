"""The simulator ASGI app: every registered provider's routes plus the `/_sim/` control surface (no auth).

Control routes:
    GET    /_sim/stats           per-provider counters (what reached the "provider"), keyed by provider name,
                                 and the storm's under "storm"
    GET    /_sim/events?since=t  request log, for benchmark timelines
    POST   /_sim/reset           clear all state and counters, end the storm (config stays)
    GET    /_sim/config          current SimConfig
    POST   /_sim/config          deep-merge a partial SimConfig, e.g. {"syncso": {"plan": "scale"}}
    GET    /_sim/faults          queued faults
    POST   /_sim/faults          queue a fault, e.g. {"route": "syncso.create", "status": 503, "times": 2},
                                 or fail the generations given some input: {"route": "syncso.input",
                                 "contains": "fr.wav"} (`simulators.syncso.inputs`)
    DELETE /_sim/faults          clear queued faults
    GET    /_sim/storm           the fault storm: active or not, its plan and counters
    POST   /_sim/storm           start a storm (replacing any), e.g. {"share_5xx": 0.2, "seed": 7} (`storm`)
    DELETE /_sim/storm           end the storm (its plan and counters stay visible)
Providers add their own control routes under `/_sim/<name>/` (see each provider module); each serves
`GET /_sim/<name>/inputs`: per provider job, the SHA-256 and size of each media input it was given and of
the output it serves (`simulators.media`).

The providers come from `simulators.registry`; this module names none of them. Unknown paths and
methods get a NestJS-style body (`statusCode`, `message`, `error`), whichever provider was meant.
Stopping the server (ASGI lifespan shutdown) cancels pending webhook deliveries and closes their clients.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any, Protocol

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from simulators.config import SimConfig
from simulators.events import EventLog
from simulators.registry import SIMULATORS
from simulators.storm import Storm, quiet_uvicorn_cuts


class Provider(Protocol):
    """One simulated provider: its routes, state and counters (built by its `SimSpec.provider`)."""

    name: str

    def routes(self) -> list[BaseRoute]: ...
    def configure(self, config: SimConfig) -> None: ...
    def reset(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def add_fault(self, raw: dict[str, Any]) -> None: ...
    def pending_faults(self) -> dict[str, Any]: ...
    def clear_faults(self) -> None: ...
    def attach_storm(self, storm: Storm) -> None: ...
    async def aclose(self) -> None: ...


class Control:
    """Handlers of the `/_sim/` routes over a set of providers sharing one config and event log."""

    def __init__(self, config: SimConfig, providers: list[Provider], events: EventLog, storm: Storm) -> None:
        self.config = config
        self.providers = {provider.name: provider for provider in providers}
        self.events = events
        self.storm = storm

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_sim/stats", self.stats, methods=["GET"]),
            Route("/_sim/events", self.event_log, methods=["GET"]),
            Route("/_sim/reset", self.reset, methods=["POST"]),
            Route("/_sim/config", self.get_config, methods=["GET"]),
            Route("/_sim/config", self.update_config, methods=["POST"]),
            Route("/_sim/faults", self.list_faults, methods=["GET"]),
            Route("/_sim/faults", self.add_fault, methods=["POST"]),
            Route("/_sim/faults", self.clear_faults, methods=["DELETE"]),
            Route("/_sim/storm", self.get_storm, methods=["GET"]),
            Route("/_sim/storm", self.start_storm, methods=["POST"]),
            Route("/_sim/storm", self.end_storm, methods=["DELETE"]),
        ]

    async def stats(self, request: Request) -> Response:
        stats = {name: provider.stats() for name, provider in self.providers.items()}
        return JSONResponse(stats | {"storm": self.storm.counters()})

    async def event_log(self, request: Request) -> Response:
        try:
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            since = math.nan
        if math.isnan(since):
            return _bad_request("since must be a unix time in seconds")
        return JSONResponse(self.events.since(since))

    async def reset(self, request: Request) -> Response:
        for provider in self.providers.values():
            provider.reset()
        self.events.clear()
        self.storm.reset()
        return JSONResponse({"reset": True})

    async def get_config(self, request: Request) -> Response:
        return JSONResponse(self.config.model_dump(mode="json"))

    async def update_config(self, request: Request) -> Response:
        patch = await _json_object(request)
        if patch is None:
            return _bad_request("body must be a JSON object")
        try:
            config = SimConfig.model_validate(_merge(self.config.model_dump(), patch))
        except ValidationError as exc:
            return _bad_request(exc.errors(include_url=False, include_context=False))
        self.config = config
        for provider in self.providers.values():
            provider.configure(config)
        return JSONResponse(config.model_dump(mode="json"))

    async def list_faults(self, request: Request) -> Response:
        return JSONResponse({name: provider.pending_faults() for name, provider in self.providers.items()})

    async def add_fault(self, request: Request) -> Response:
        raw = await _json_object(request)
        route = raw.get("route") if raw is not None else None
        provider = self.providers.get(route.split(".", 1)[0]) if isinstance(route, str) else None
        if raw is None or provider is None:
            return _bad_request(f"route must start with one of: {', '.join(self.providers)}")
        try:
            provider.add_fault(raw)
        except ValidationError as exc:
            return _bad_request(exc.errors(include_url=False, include_context=False))
        except ValueError as exc:
            return _bad_request(str(exc))
        return JSONResponse({"queued": raw}, status_code=201)

    async def clear_faults(self, request: Request) -> Response:
        for provider in self.providers.values():
            provider.clear_faults()
        return JSONResponse({"cleared": True})

    async def get_storm(self, request: Request) -> Response:
        return JSONResponse(self.storm.view())

    async def start_storm(self, request: Request) -> Response:
        raw = await _json_object(request)
        if raw is None:
            return _bad_request("body must be a JSON object")
        try:
            plan = self.storm.validate(raw)
        except ValidationError as exc:
            return _bad_request(exc.errors(include_url=False, include_context=False))
        self.storm.start(plan)
        return JSONResponse(self.storm.view(), status_code=201)

    async def end_storm(self, request: Request) -> Response:
        self.storm.stop()
        return JSONResponse(self.storm.view())


def create_app(config: SimConfig, storm_plan: Mapping[str, Any] | None = None) -> Starlette:
    """Build the simulator app: every registered provider's routes, control routes under `/_sim/`.

    `storm_plan`, a `POST /_sim/storm` body, starts a fault storm at once (pydantic's ValidationError
    when invalid).
    """
    events = EventLog()
    providers: list[Provider] = [spec.provider(config, events) for spec in SIMULATORS]
    storm = Storm(provider.name for provider in providers)
    for provider in providers:
        provider.attach_storm(storm)
    if storm_plan is not None:
        storm.start(storm.validate(storm_plan))
    quiet_uvicorn_cuts()
    control = Control(config, providers, events, storm)
    routes = [route for provider in providers for route in provider.routes()] + control.routes()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for provider in providers:
            await provider.aclose()

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, 500: _internal_error},
        lifespan=lifespan,
    )
    app.state.control = control
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and methods get the NestJS router's body, e.g. "Cannot DELETE /v2/generations/x".
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status in (404, 405):
        return _error(404, f"Cannot {request.method} {request.url.path}")
    return _error(status, str(getattr(exc, "detail", "")))


async def _internal_error(request: Request, exc: Exception) -> Response:
    body = {"statusCode": 500, "message": "Internal server error", "error": "Internal Server Error"}
    return JSONResponse({**body, "errorCode": "internal_error", "requestId": str(uuid.uuid4())}, 500)


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        current = merged.get(key)
        merged[key] = (
            _merge(current, value) if isinstance(current, dict) and isinstance(value, dict) else value
        )
    return merged


def _error(status: int, message: str) -> Response:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return JSONResponse({"statusCode": status, "message": message, "error": phrase}, status_code=status)


def _bad_request(detail: Any) -> Response:
    return JSONResponse({"statusCode": 400, "error": "Bad Request", "message": detail}, status_code=400)
