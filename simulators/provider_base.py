"""What every provider simulator shares: the control-surface hooks and the request pipeline.

A provider subclasses `ProviderBase` with its state and webhook dispatcher, names its fault routes and
its outcome-fault model, and writes `_gate` (auth, injected fault, limits: whatever its API checks
before a handler runs) and `storm_response` (its 5xx and 429 bodies for the fault storm). `_endpoint`
wraps each handler: count the request, draw for the storm, gate it and run it (or answer the storm's
refusal), count the response and log it in the shared `EventLog` as `<name>.<route>`, then hand it to
the storm's timeout or drop if it drew one.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from simulators.events import EventLog
from simulators.faults import FaultQueue, HoldFault, HttpFault
from simulators.spec import section
from simulators.storm import Storm, Strike
from simulators.webhook_delivery import WebhookQueue

if TYPE_CHECKING:
    from simulators.config import SimConfig

Handler = Callable[[Request], Awaitable[Response]]


class SimResponse(JSONResponse):
    """A JSON response that also tells the request log its error code and the id it concerns.

    `resource_id` (a generation, a project) is logged as the event's `generation_id`.
    """

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        *,
        error_code: str | None = None,
        resource_id: str | None = None,
    ) -> None:
        super().__init__(content, status_code, headers)
        self.error_code = error_code
        self.resource_id = resource_id


class FaultBody(Protocol):
    """A `POST /_sim/faults` body model: the route it targets and how many requests it answers."""

    @property
    def route(self) -> str: ...
    @property
    def times(self) -> int: ...
    @classmethod
    def model_validate(cls, obj: Any, /) -> Self: ...


class RequestCounters(Protocol):
    """The counters `_endpoint` keeps: requests by route, responses by status."""

    @property
    def requests(self) -> Counter[str]: ...
    @property
    def responses(self) -> Counter[str]: ...


class ProviderState(Protocol):
    """What the shared hooks read and call on a provider's state."""

    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def faults(self) -> FaultQueue[HttpFault]: ...
    @property
    def outcomes(self) -> FaultQueue[Any]: ...
    @property
    def stats(self) -> RequestCounters: ...
    # Any: each state takes its own config class; `section` has checked it by then.
    def configure(self, config: Any) -> None: ...
    def reset(self) -> None: ...
    def snapshot(self, now: float) -> dict[str, Any]: ...


StateT = TypeVar("StateT", bound=ProviderState)
WebhooksT = TypeVar("WebhooksT", bound=WebhookQueue[Any, Any])


class ProviderBase(ABC, Generic[StateT, WebhooksT]):
    """The routes' shared plumbing and the control surface hooks used by `simulators.app`.

    Subclasses set `name` (config section, fault-route and event prefix), `config_type` (its config
    section class), `fault_routes` (the routes `POST /_sim/faults` may target), `outcome_fault` (the
    model of a `<name>.outcome` fault) and `id_param` (the path parameter logged when a response names
    no id).
    """

    name: str
    config_type: ClassVar[type[BaseModel]]
    fault_routes: ClassVar[tuple[str, ...]]
    outcome_fault: ClassVar[type[FaultBody]]
    id_param: ClassVar[str]

    def __init__(self, state: StateT, events: EventLog, webhooks: WebhooksT) -> None:
        self.state = state
        self.events = events
        self.webhooks = webhooks
        self._storm: Storm | None = None
        self.holds: FaultQueue[HoldFault] = FaultQueue()
        self._released = 0  # bumped when faults are cleared or state reset: held answers go at once

    @abstractmethod
    def routes(self) -> list[BaseRoute]:
        """The API routes (each wrapped by `_endpoint`) and the `/_sim/<name>/` control routes."""

    # Control surface hooks (used by simulators.app).
    def configure(self, config: SimConfig) -> None:
        """Apply this provider's section of a new config."""
        self.state.configure(section(config, self.name, self.config_type))

    def reset(self) -> None:
        """Drop pending webhooks and forget all state but the config."""
        self.webhooks.cancel()
        self.state.reset()
        self.holds.clear()
        self._released += 1

    async def aclose(self) -> None:
        """Stop webhook deliveries and close their client (server shutdown)."""
        await self.webhooks.aclose()

    def stats(self) -> dict[str, Any]:
        """This provider's `/_sim/stats` counters."""
        return self.state.snapshot(self.state.clock())

    def add_fault(self, raw: dict[str, Any]) -> None:
        """Queue a fault; raise ValueError (pydantic ValidationError included) when it is malformed."""
        if raw.get("route") == f"{self.name}.outcome":
            outcome = self.outcome_fault.model_validate(raw)
            self.state.outcomes.push(outcome.route, outcome, outcome.times)
            return
        known = {f"{self.name}.{r}" for r in self.fault_routes}
        if "hold_s" in raw:
            hold = HoldFault.model_validate(raw)
            if hold.route not in known:
                raise ValueError(f"unknown route {hold.route!r}")
            self.holds.push(hold.route, hold, hold.times)
            return
        fault = HttpFault.model_validate(raw)
        if fault.route not in known:
            raise ValueError(f"unknown route {fault.route!r}")
        self.state.faults.push(fault.route, fault, fault.times)

    def pending_faults(self) -> dict[str, Any]:
        """Queued route and outcome faults, by route."""
        return self.state.faults.pending() | self.state.outcomes.pending() | self.holds.pending()

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self.state.faults.clear()
        self.state.outcomes.clear()
        self.holds.clear()
        self._released += 1

    def attach_storm(self, storm: Storm) -> None:
        """Let the app's fault storm draw for every request `_endpoint` serves."""
        self._storm = storm

    @abstractmethod
    def storm_response(self, strike: Strike) -> Response:
        """This API's answer to a storm refusal: its error body for `strike.status` (500, 502, 503), or
        its rate-limit or concurrency 429 (the rate one when it has no other), as it would send them."""

    # Request pipeline.
    def _endpoint(self, route: str, handler: Handler, auth: bool = True) -> Handler:
        async def endpoint(request: Request) -> Response:
            self.state.stats.requests[route] += 1
            strike = self._storm.strike(self.name) if self._storm is not None else None
            hold = self.holds.take(f"{self.name}.{route}")
            if strike is not None and strike.refuses:
                response = self.storm_response(strike)
            else:
                response = self._gate(route, request, auth) or await handler(request)
            self._record(route, request, response)
            if hold is not None:
                await self._hold(hold.hold_s)
            return response if strike is None else await strike.deliver(response)

        return endpoint

    async def _hold(self, seconds: float) -> None:
        """Wait ``seconds`` in short naps; clearing the faults or a reset ends the wait at once."""
        released, deadline = self._released, time.monotonic() + seconds
        while self._released == released and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.1))

    @abstractmethod
    def _gate(self, route: str, request: Request, auth: bool) -> Response | None:
        """The response that stops a request before its handler, or None to let it through."""

    def _record(self, route: str, request: Request, response: Response) -> None:
        error_code = resource_id = None
        if isinstance(response, SimResponse):
            error_code, resource_id = response.error_code, response.resource_id
        self.state.stats.responses[str(response.status_code)] += 1
        self.events.record(
            {
                "t": self.state.clock(),
                "route": f"{self.name}.{route}",
                "status": response.status_code,
                "error_code": error_code,
                "generation_id": resource_id or request.path_params.get(self.id_param),
            }
        )
