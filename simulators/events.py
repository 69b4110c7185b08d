"""The simulator's request log, served by `GET /_sim/events` for benchmark timelines."""

from __future__ import annotations

from collections import deque
from typing import TypedDict

MAX_EVENTS = 100_000


class Event(TypedDict):
    t: float  # unix time the response was produced (so the log is ordered by t)
    route: str  # "<provider>.<operation>", e.g. "syncso.create"; "syncso.webhook" is a delivery made
    status: int  # for a webhook: the receiver's status, 0 when it gave no answer
    error_code: str | None  # for a webhook without answer: the error's name, e.g. "ConnectError"
    generation_id: str | None


class EventLog:
    """Bounded, append-only log of answered requests (oldest dropped first)."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self._events: deque[Event] = deque(maxlen=max_events)

    def record(self, event: Event) -> None:
        self._events.append(event)

    def since(self, t: float) -> list[Event]:
        """Events that arrived strictly after `t`, oldest first."""
        return [event for event in self._events if event["t"] > t]

    def clear(self) -> None:
        self._events.clear()
