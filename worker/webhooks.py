"""``genq webhooks``: the ASGI app that receives providers' webhook deliveries and wakes parked waits.

Served by ``genq webhooks`` (uvicorn), or mounted in an existing app:
``Mount("/webhooks", app=worker.webhooks.create_app())``. Providers deliver to
``GENQ_WEBHOOKS__BASE_URL`` + ``/<provider>``; create sends that URL when the setting is set.

sync.so (``POST /syncso``): a delivery counts only if its ``Sync-Signature`` header
(``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the whsec_ secret>``) verifies in
constant time, its timestamp is within ``tolerance_s`` of now, and its signature was not accepted
before. Anything else gets 401 and changes nothing. An accepted delivery records the generation's end
and wakes its parked stage (``worker.waits``), or keeps the end for a stage that has not parked yet.
A delivery that never comes costs only latency: the status sweep finds the end anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from schemas import layout as L
from worker.providers.syncso.client import GenerationStatus
from worker.settings import Settings, get_settings
from worker.waits import WaitResult, Waits

log = logging.getLogger(__name__)

SYNCSO = "syncso"


class Refused(Exception):
    """A delivery that does not count (401)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 sync.so puts in ``v1``: keyed with the secret, over ``"<t>." + body``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_sync_signature(
    secret: str, header: str | None, body: bytes, *, now: float, tolerance_s: float
) -> str:
    """Check a ``Sync-Signature`` header against the body; return the matching signature or raise
    ``Refused``. Several ``v1`` values (a secret being rotated) are accepted if any matches."""
    if not header:
        raise Refused("no Sync-Signature header")
    pairs = [part.strip().split("=", 1) for part in header.split(",")]
    values = [(p[0].strip(), p[1].strip()) for p in pairs if len(p) == 2]
    stamps = [v for k, v in values if k == "t"]
    signatures = [v.lower() for k, v in values if k == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        raise Refused("malformed Sync-Signature header")
    timestamp = int(stamps[0])
    expected = sign(secret, timestamp, body)
    matched = [s for s in signatures if hmac.compare_digest(expected, s)]
    if not matched:
        raise Refused("signature does not match")
    if abs(now - timestamp) > tolerance_s:
        raise Refused(f"signed {now - timestamp:.0f} s ago; older than {tolerance_s:g} s")
    return matched[0]


class Receiver:
    def __init__(
        self, settings: Settings, client: redis.Redis, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.redis = client
        self.waits = Waits(client)
        self.clock = clock

    async def syncso(self, request: Request) -> Response:
        secret = self.settings.syncso.webhook_secret.get_secret_value()
        if not secret:
            return JSONResponse({"error": "GENQ_SYNCSO__WEBHOOK_SECRET is not set"}, status_code=503)
        body = await request.body()
        try:
            signature = verify_sync_signature(
                secret,
                request.headers.get("sync-signature"),
                body,
                now=self.clock(),
                tolerance_s=self.settings.webhooks.tolerance_s,
            )
            payload = json.loads(body)
            if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
                raise Refused("the body is not a generation")
        except (Refused, ValueError) as exc:
            log.warning("sync.so webhook refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=401)
        return await run_in_threadpool(self._accept, SYNCSO, signature, payload)

    def _accept(self, provider: str, signature: str, payload: dict[str, object]) -> Response:
        digest = hashlib.sha256(signature.encode()).hexdigest()
        seen = L.WEBHOOK_SEEN_KEY.format(provider=provider, digest=digest)
        keep_s = round(2 * self.settings.webhooks.tolerance_s)
        if not self.redis.set(seen, "1", nx=True, ex=keep_s):
            log.warning("%s webhook refused: delivered before", provider)
            return JSONResponse({"error": "delivered before"}, status_code=401)
        generation_id = str(payload["id"])
        if payload.get("status") not in GenerationStatus.TERMINAL:
            return JSONResponse({"ignored": f"status {payload.get('status')}"}, status_code=202)
        try:
            woken = self.waits.resolve(provider, generation_id, WaitResult(state="ended", body=payload,
                                                                           source="webhook"))  # fmt: skip
        except redis.RedisError:
            self.redis.delete(seen)
            raise
        return JSONResponse({"woken": woken == 1})


def create_app(settings: Settings | None = None, client: redis.Redis | None = None) -> Starlette:
    """The receiver over the worker settings' Redis (``GENQ_REDIS_URL``) and secrets."""
    settings = settings or get_settings()
    receiver = Receiver(settings, client or redis.Redis.from_url(settings.redis_url))

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def unavailable(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "Redis unavailable"}, status_code=503)

    routes = [Route("/syncso", receiver.syncso, methods=["POST"]), Route("/health", health)]
    return Starlette(routes=routes, exception_handlers={redis.RedisError: unavailable})
