"""``genq webhooks``: the ASGI app that receives providers' webhook deliveries and wakes parked waits.

Served by ``genq webhooks`` (uvicorn), or mounted in an existing app:
``Mount("/webhooks", app=worker.webhooks.create_app())``. Each provider of the registry that takes
webhooks has ``POST /<provider>``; providers deliver to ``GENQ_WEBHOOKS__BASE_URL`` + ``/<provider>``
(create sends that URL when the setting is set). The provider's own handler checks the delivery (a
signature, or a per-job token where the provider signs nothing) and then uses the ``Receiver`` below to
record the end and wake the parked stage. A delivery that never comes costs only latency: the status
sweep finds the end anyway.

Anyone can send to the receiver, so before a handler runs it bounds what a sender may cost
(``GENQ_WEBHOOKS__*``): at most ``max_concurrency`` deliveries at once (503 beyond), a body of at most
``max_body_bytes`` (413, by its Content-Length before anything is read, else as it arrives) that must
arrive within ``body_timeout_s`` (408). A body a handler cannot use is 400, never 500.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message

from schemas import layout as L
from worker.health import health, health_client
from worker.providers.registry import PROVIDERS
from worker.providers.spec import load
from worker.settings import Settings, WebhookSettings, get_settings, redis_client
from worker.waits import WaitResult, Waits

log = logging.getLogger(__name__)

Handler = Callable[["Receiver", Request], Awaitable[Response]]

# No provider's delivery nests deeper; a deeper body is refused before anything recurses over it.
MAX_JSON_DEPTH: Final = 32


class Unusable(ValueError):
    """A body the receiver cannot use (400; nothing changes). Handlers raise it, or ``json_object`` does."""


class BodyRefused(Exception):
    """A body refused while it is read: too large (413), too slow (408), or cut off or mis-framed (400).
    The connection is closed after the answer, so the rest of such a body is never read."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class Receiver:
    """What a provider's webhook handler may do: accept a delivery once, record a provider job's end and
    wake its stage, or move its next status check to now."""

    def __init__(
        self, settings: Settings, client: redis.Redis, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.redis = client
        self.waits = Waits(client)
        self.clock = clock
        self.in_flight = 0  # deliveries being handled; only the event loop's thread changes it

    async def resolve_once(
        self, provider: str, delivery: str, provider_id: str, result: WaitResult
    ) -> Response:
        """Record ``result`` for ``provider_id`` and wake its parked stage, unless ``delivery`` (a
        signature or delivery id) was accepted before (401: a replay)."""
        return await run_in_threadpool(self._resolve_once, provider, delivery, provider_id, result)

    def _resolve_once(self, provider: str, delivery: str, provider_id: str, result: WaitResult) -> Response:
        digest = hashlib.sha256(delivery.encode()).hexdigest()
        seen = L.WEBHOOK_SEEN_KEY.format(provider=provider, digest=digest)
        keep_s = round(2 * self.settings.webhooks.tolerance_s)
        if not self.redis.set(seen, "1", nx=True, ex=keep_s):
            log.warning("%s webhook refused: delivered before", provider)
            return JSONResponse({"error": "delivered before"}, status_code=401)
        try:
            woken = self.waits.resolve(provider, provider_id, result)
        except redis.RedisError:
            self.redis.delete(seen)
            raise
        return JSONResponse({"woken": woken == 1})

    async def check_now(self, provider: str, provider_id: str) -> bool:
        """Make the parked wait for ``provider_id`` due for its status check now (the account's sweep
        then asks the provider); False if nothing waits for it."""
        return await run_in_threadpool(self.waits.check_now, provider, provider_id)

    async def deliver(self, provider: str, handler: Handler, request: Request) -> Response:
        """Run ``handler`` on ``request`` within the receiver's caps: the handler sees the body already
        read (``await request.body()`` returns it), and never a body over the caps."""
        limits = self.settings.webhooks
        if self.in_flight >= limits.max_concurrency:
            log.warning("%s webhook refused: %d deliveries in progress", provider, self.in_flight)
            return JSONResponse({"error": "busy"}, status_code=503, headers={"retry-after": "1"})
        self.in_flight += 1
        try:
            body = await read_body(request, limits)
            return await handler(self, _with_body(request, body))
        except BodyRefused as exc:
            log.warning("%s webhook refused: %s", provider, exc)
            # Closing the connection is what stops the rest of the body from being read.
            close = {"connection": "close"}
            return JSONResponse({"error": str(exc)}, status_code=exc.status_code, headers=close)
        except Unusable as exc:
            log.warning("%s webhook refused: %s", provider, exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        finally:
            self.in_flight -= 1


async def read_body(request: Request, limits: WebhookSettings) -> bytes:
    """The request's whole body, or ``BodyRefused``: 413 when its Content-Length or the bytes received so
    far pass ``max_body_bytes`` (so at most that much is ever held), 408 when it has not all arrived
    ``body_timeout_s`` after the handler started reading, 400 for a Content-Length that is not a number
    or a sender that went away."""
    max_bytes = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not (declared.isascii() and declared.isdigit()):
            raise BodyRefused(400, "Content-Length is not a number")
        if len(declared) > len(str(max_bytes)) or int(declared) > max_bytes:
            raise BodyRefused(413, f"the body is over {max_bytes} bytes")
    chunks: list[bytes] = []
    received = 0
    try:
        with anyio.fail_after(limits.body_timeout_s):
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes:
                    raise BodyRefused(413, f"the body is over {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyRefused(408, f"the body did not arrive within {limits.body_timeout_s:g} s") from None
    except ClientDisconnect:
        raise BodyRefused(400, "the sender went away before the end of the body") from None
    return b"".join(chunks)


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, or ``Unusable``: not JSON (or not UTF-8), ``NaN``/``Infinity``, an
    integer of thousands of digits, nested deeper than ``MAX_JSON_DEPTH``, text that is not valid
    Unicode (a lone surrogate could be neither stored nor used as a key), or not an object."""
    try:
        value = json.loads(body, parse_constant=_not_json)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Unusable("the body is not JSON") from None
    if not isinstance(value, dict):
        raise Unusable("the body is not a JSON object")
    if not _nested_within(value, MAX_JSON_DEPTH):
        raise Unusable(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise Unusable("the body's text is not valid Unicode") from None
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _nested_within(value: Any, depth: int) -> bool:
    """Whether no array or object in ``value`` lies more than ``depth`` levels deep (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if level > depth:
            return False
        stack.extend((child, level + 1) for child in children)
    return True


def _with_body(request: Request, body: bytes) -> Request:
    """``request`` again, over a receive channel that hands out ``body`` (already read) as its body."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)


def create_app(settings: Settings | None = None, client: redis.Redis | None = None) -> Starlette:
    """The receiver over the worker settings' Redis (``GENQ_REDIS_URL``) and secrets. ``GET /health``
    answers 200 while Redis answers a PING within a second, else 503 with what is wrong."""
    settings = settings or get_settings()
    receiver = Receiver(settings, client or redis_client(settings))
    checked = client or health_client(settings)

    async def healthy(request: Request) -> Response:
        status, body = await run_in_threadpool(health, checked)
        return JSONResponse(body, status_code=status)

    async def unavailable(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "Redis unavailable"}, status_code=503)

    def route(provider: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await receiver.deliver(provider, handler, request)

        return endpoint

    routes = [
        Route(f"/{spec.name}", route(spec.name, load(spec.webhook)), methods=["POST"])
        for spec in PROVIDERS.values()
        if spec.webhook is not None
    ]
    routes.append(Route("/health", healthy))
    return Starlette(routes=routes, exception_handlers={redis.RedisError: unavailable})


def server_options(limits: WebhookSettings) -> dict[str, Any]:
    """uvicorn's options for ``genq webhooks``: no access log (URLs carry per-job tokens), and at most
    ``max_concurrency`` open connections (uvicorn answers 503 past that, so senders that trickle their
    headers hold no more sockets than that). uvicorn counts the new connection itself, hence the + 1."""
    return {"access_log": False, "lifespan": "off", "limit_concurrency": limits.max_concurrency + 1}
