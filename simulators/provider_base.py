"""What every provider simulator shares: the control-surface hooks and the request pipeline.

A provider subclasses `ProviderBase` with its state and webhook dispatcher, names its fault routes and
its outcome-fault model, and writes `_gate` (auth, injected fault, limits: whatever its API checks
before a handler runs). `_endpoint` wraps each handler: count the request, gate it, run it, then count
the response and log it in the shared `EventLog` as `<name>.<route>`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from simulators.events import EventLog
from simulators.faults import FaultQueue, HttpFault
from simulators.spec import section
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
        fault = HttpFault.model_validate(raw)
        if fault.route not in {f"{self.name}.{r}" for r in self.fault_routes}:
            raise ValueError(f"unknown route {fault.route!r}")
        self.state.faults.push(fault.route, fault, fault.times)

    def pending_faults(self) -> dict[str, Any]:
        """Queued route and outcome faults, by route."""
        return self.state.faults.pending() | self.state.outcomes.pending()

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self.state.faults.clear()
        self.state.outcomes.clear()

    # Request pipeline.
    def _endpoint(self, route: str, handler: Handler, auth: bool = True) -> Handler:
        async def endpoint(request: Request) -> Response:
            self.state.stats.requests[route] += 1
            response = self._gate(route, request, auth) or await handler(request)
            self._record(route, request, response)
            return response

        return endpoint

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
