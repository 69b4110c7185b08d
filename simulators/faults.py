"""Injected faults: canned responses or outcomes that replace the next N requests to a route."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

F = TypeVar("F", bound=BaseModel)


class HttpFault(BaseModel):
    """`POST /_sim/faults` body for a route-level fault, e.g. `{"route": "syncso.create", "status": 503}`."""

    model_config = ConfigDict(extra="forbid")

    route: str
    status: int = Field(ge=100, le=599)
    times: int = Field(1, ge=1)
    body: dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] | None = None


class HoldFault(BaseModel):
    """`POST /_sim/faults` body that delays answers: the next `times` requests to `route` are processed as
    usual, then their answers are held `hold_s` (a client that gives up, or dies, meanwhile finds the
    work done), e.g. `{"route": "syncso.create", "hold_s": 6}`."""

    model_config = ConfigDict(extra="forbid")

    route: str
    hold_s: float = Field(gt=0, le=600)
    times: int = Field(1, ge=1)


@dataclass
class _Entry(Generic[F]):
    fault: F
    remaining: int


class FaultQueue(Generic[F]):
    """FIFO of faults per route; each fault answers `remaining` requests, then the next one takes over."""

    def __init__(self) -> None:
        self._queues: defaultdict[str, deque[_Entry[F]]] = defaultdict(deque)

    def push(self, route: str, fault: F, times: int) -> None:
        self._queues[route].append(_Entry(fault, times))

    def take(self, route: str) -> F | None:
        """Consume one use of the head fault for `route`, or return None when nothing is queued."""
        queue = self._queues.get(route)
        if not queue:
            return None
        entry = queue[0]
        entry.remaining -= 1
        if entry.remaining <= 0:
            queue.popleft()
        return entry.fault

    def pending(self) -> dict[str, list[dict[str, Any]]]:
        return {
            route: [{**entry.fault.model_dump(), "remaining": entry.remaining} for entry in queue]
            for route, queue in self._queues.items()
            if queue
        }

    def clear(self) -> None:
        self._queues.clear()
