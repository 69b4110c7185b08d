"""The fault storm: random faults on a share of the stormed providers' requests (`/_sim/storm`).

Every request a provider's `_endpoint` serves (its API routes and the unauthenticated files it serves,
never a `/_sim/` control route) takes one draw `u` of the storm's seeded `random.Random`, so a seed and
a request order give the same faults. `u` in [0, 1) falls in one band, in this order:

    share_5xx      500, 502 or 503 (thirds of the band), the provider's error body; nothing processed
    share_429      the provider's rate-limit 429 (first half) or concurrency 429 (second half), as it
                   sends them; nothing processed
    share_timeout  processed, then the answer is held `timeout_s` before it is sent
    share_drop     processed, then the status line, headers and half the body are sent and the
                   connection is closed (the client sees a protocol error)
    the rest       untouched

Ending the storm (DELETE, reset, a new storm) releases held answers at once; on server shutdown uvicorn
cancels them after its graceful timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

HOLD_NAP_S = 0.1  # longest sleep of a held answer between checks that its storm still runs
# uvicorn's error for an app that returns mid-response, which is what a drop does on purpose.
_INCOMPLETE = "ASGI callable returned without completing response"
_cut_here: ContextVar[bool] = ContextVar("storm_cut", default=False)


class StormKind(StrEnum):
    """What a storm does to one request; the values are the counters' names."""

    SERVER_ERROR = "5xx"
    RATE_LIMIT = "429_rate"
    CONCURRENCY = "429_concurrency"
    TIMEOUT = "timeout"
    DROP = "drop"


# Answered by the provider's `storm_response` instead of its handler.
REFUSALS = frozenset({StormKind.SERVER_ERROR, StormKind.RATE_LIMIT, StormKind.CONCURRENCY})


class StormPlan(BaseModel):
    """`POST /_sim/storm` body: which providers, and the share of their requests each fault takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: tuple[str, ...] | None = Field(None, min_length=1)  # None: every provider
    share_5xx: float = Field(0.0, ge=0, le=1)
    share_429: float = Field(0.0, ge=0, le=1)
    share_timeout: float = Field(0.0, ge=0, le=1)
    share_drop: float = Field(0.0, ge=0, le=1)
    timeout_s: float = Field(35.0, gt=0)  # past genq's default 30 s read timeout
    retry_after_s: float = Field(1.0, ge=0)  # `Retry-After` of the rate-limit 429s (whole seconds, >= 1)
    seed: int | None = None

    @field_validator("providers")
    @classmethod
    def _known(cls, providers: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        known = info.context.get("providers") if isinstance(info.context, dict) else None
        unknown = [p for p in providers or () if known is not None and p not in known]
        if unknown:
            raise ValueError(f"unknown providers {unknown}; known: {', '.join(known or ())}")
        return providers

    @model_validator(mode="after")
    def _shares_fit(self) -> Self:
        if sum(share for share, _ in self.bands()) > 1 + 1e-9:
            raise ValueError("share_5xx + share_429 + share_timeout + share_drop must not exceed 1")
        return self

    def bands(self) -> tuple[tuple[float, tuple[tuple[StormKind, int | None], ...]], ...]:
        """(share, outcomes) in draw order; a band is split evenly between its outcomes (kind, status)."""
        return (
            (self.share_5xx, tuple((StormKind.SERVER_ERROR, status) for status in (500, 502, 503))),
            (self.share_429, ((StormKind.RATE_LIMIT, 429), (StormKind.CONCURRENCY, 429))),
            (self.share_timeout, ((StormKind.TIMEOUT, None),)),
            (self.share_drop, ((StormKind.DROP, None),)),
        )

    def outcome(self, u: float) -> tuple[StormKind, int | None] | None:
        """The fault of the draw `u` in [0, 1), or None when the request is left alone."""
        low = 0.0
        for share, outcomes in self.bands():
            if u < low + share:
                return outcomes[min(int((u - low) / share * len(outcomes)), len(outcomes) - 1)]
            low += share
        return None


@dataclass(frozen=True)
class Strike:
    """One stormed request: its fault (`status` 500/502/503 or 429 for a refusal) and its storm's settings."""

    kind: StormKind
    status: int | None
    retry_after_s: float
    timeout_s: float
    storm: Storm
    epoch: int

    @property
    def refuses(self) -> bool:
        """Whether the provider's `storm_response` answers instead of the handler."""
        return self.kind in REFUSALS

    async def deliver(self, response: Response) -> Response:
        """The handler's `response` as it goes out: after the hold for a timeout, cut for a drop."""
        if self.kind is StormKind.TIMEOUT:
            await self.storm.hold(self)
        return CutResponse(response) if self.kind is StormKind.DROP else response


class Storm:
    """The app's storm (one, shared by every provider): its plan, seeded draws and counters per provider."""

    def __init__(self, providers: Iterable[str]) -> None:
        self.providers = tuple(providers)
        self.plan: StormPlan | None = None  # the last one started, kept after it ends for its counters
        self.active = False
        self._rng = random.Random()
        self._epoch = 0  # changes whenever a storm starts or ends; held answers of an older one go out
        self._counts: dict[str, Counter[str]] = {name: Counter() for name in self.providers}

    def validate(self, raw: Mapping[str, Any]) -> StormPlan:
        """The plan of a `POST /_sim/storm` body; raises pydantic's ValidationError."""
        return StormPlan.model_validate(raw, context={"providers": self.providers})

    def start(self, plan: StormPlan) -> None:
        """Replace any running storm with `plan`, counters from zero."""
        self.plan, self.active, self._rng = plan, True, random.Random(plan.seed)
        self._epoch += 1
        for counts in self._counts.values():
            counts.clear()

    def stop(self) -> None:
        """End the storm; its plan and counters stay visible."""
        self.active = False
        self._epoch += 1

    def reset(self) -> None:
        """End the storm and forget its plan and counters."""
        self.stop()
        self.plan = None
        for counts in self._counts.values():
            counts.clear()

    def strike(self, provider: str) -> Strike | None:
        """Draw for one request to `provider`: its fault, or None when it is left alone."""
        plan = self.plan
        if not self.active or plan is None or (plan.providers is not None and provider not in plan.providers):
            return None
        counts = self._counts[provider]
        counts["requests"] += 1
        outcome = plan.outcome(self._rng.random())
        if outcome is None:
            return None
        kind, status = outcome
        counts[kind] += 1
        return Strike(kind, status, plan.retry_after_s, plan.timeout_s, self, self._epoch)

    async def hold(self, strike: Strike) -> None:
        """Wait the strike's `timeout_s`, or less if its storm ends (short naps, the loop stays free)."""
        deadline = time.monotonic() + strike.timeout_s
        while self._epoch == strike.epoch and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, HOLD_NAP_S))

    def counters(self) -> dict[str, dict[str, int]]:
        """Per provider: requests drawn for and faults of each kind (`/_sim/stats` "storm")."""
        return {
            name: {"requests": counts["requests"]} | {kind.value: counts[kind] for kind in StormKind}
            for name, counts in self._counts.items()
        }

    def view(self) -> dict[str, Any]:
        """`GET /_sim/storm`: whether it runs, its plan (the last one after it ended) and counters."""
        plan = self.plan.model_dump(mode="json") if self.plan is not None else None
        return {"active": self.active, "plan": plan, "counters": self.counters()}


class CutResponse(Response):
    """Sends `inner`'s status line and headers and the first half of its first body part, then returns
    with the response unfinished, so uvicorn closes the connection mid-body.

    `inner` still runs to its end (its later parts are discarded). An empty body gets `Content-Length: 1`,
    as a break before the first byte of an empty body could not be seen.
    """

    def __init__(self, inner: Response) -> None:
        super().__init__(status_code=inner.status_code)
        self.inner = inner
        self._start: Message | None = None
        self._cut = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def cut(message: Message) -> None:
            if self._cut:
                return
            if message["type"] == "http.response.start":
                self._start = message
                return
            body: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if self._start is None or (not body and more):
                return  # wait for the first part with bytes, or the end
            start = self._start if body or more else _claim_one_byte(self._start)
            await send(start)
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            self._cut = True

        await self.inner(scope, receive, cut)
        _cut_here.set(True)  # same task as uvicorn's log call: lets `QuietCuts` drop its error line


def _claim_one_byte(start: Message) -> Message:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    return {**start, "headers": [*headers, (b"content-length", b"1")]}


class QuietCuts(logging.Filter):
    """Drops uvicorn's "returned without completing response" error when a storm's drop caused it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_cut_here.get() and str(record.msg).startswith(_INCOMPLETE))


def quiet_uvicorn_cuts() -> None:
    """Install `QuietCuts` on uvicorn's error logger once (its log config keeps a logger's filters)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietCuts) for f in logger.filters):
        logger.addFilter(QuietCuts())
