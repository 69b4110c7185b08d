"""``genq webhooks``: the ASGI app that receives providers' webhook deliveries and wakes parked waits.

Served by ``genq webhooks`` (uvicorn), or mounted in an existing app:
``Mount("/webhooks", app=worker.webhooks.create_app())``. Each provider of the registry that takes
webhooks has ``POST /<provider>``; providers deliver to ``GENQ_WEBHOOKS__BASE_URL`` + ``/<provider>``
(create sends that URL when the setting is set). The provider's own handler checks the delivery (a
signature, or a per-job token where the provider signs nothing) and then uses the ``Receiver`` below to
record the end and wake the parked stage. A delivery that never comes costs only latency: the status
sweep finds the end anyway.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from schemas import layout as L
from worker.providers.registry import PROVIDERS
from worker.providers.spec import load
from worker.settings import Settings, get_settings, redis_client
from worker.waits import WaitResult, Waits

log = logging.getLogger(__name__)

Handler = Callable[["Receiver", Request], Awaitable[Response]]


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


def create_app(settings: Settings | None = None, client: redis.Redis | None = None) -> Starlette:
    """The receiver over the worker settings' Redis (``GENQ_REDIS_URL``) and secrets."""
    settings = settings or get_settings()
    receiver = Receiver(settings, client or redis_client(settings))

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def unavailable(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "Redis unavailable"}, status_code=503)

    def route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(receiver, request)

        return endpoint

    routes = [
        Route(f"/{spec.name}", route(load(spec.webhook)), methods=["POST"])
        for spec in PROVIDERS.values()
        if spec.webhook is not None
    ]
    routes.append(Route("/health", health))
    return Starlette(routes=routes, exception_handlers={redis.RedisError: unavailable})
