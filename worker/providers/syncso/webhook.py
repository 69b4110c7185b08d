"""sync.so webhook deliveries (``POST /syncso`` of ``genq webhooks``).

A delivery counts only if its ``Sync-Signature`` header (``t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" keyed with the whsec_ secret>``) verifies in constant time, its timestamp is within
``tolerance_s`` of now, and its signature was not accepted before. Anything else gets 401 and changes
nothing; so does a signed body that is not a generation (400). An accepted delivery of a terminal
generation records its end and wakes the parked stage.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from worker.providers.syncso.client import GenerationStatus
from worker.providers.syncso.spec import SPEC
from worker.waits import WaitResult
from worker.webhooks import Receiver, Unusable, json_object

log = logging.getLogger(__name__)

# A Unix time in seconds: ASCII digits only (str.isdigit also takes "²", which int() refuses).
_UNIX_TIME: Final = re.compile(r"[0-9]{1,12}")


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
    if len(stamps) != 1 or not _UNIX_TIME.fullmatch(stamps[0]) or not signatures:
        raise Refused("malformed Sync-Signature header")
    timestamp = int(stamps[0])
    expected = sign(secret, timestamp, body)
    matched = [s for s in signatures if hmac.compare_digest(expected, s)]
    if not matched:
        raise Refused("signature does not match")
    if abs(now - timestamp) > tolerance_s:
        raise Refused(f"signed {now - timestamp:.0f} s ago; older than {tolerance_s:g} s")
    return matched[0]


async def receive(receiver: Receiver, request: Request) -> Response:
    """A delivery counts once its signature verifies (else 401); a signed body that is not a generation
    is 400 (``Unusable``), one of a generation that has not ended 202."""
    secret = SPEC.section(receiver.settings).webhook_secret.get_secret_value()
    if not secret:
        return JSONResponse({"error": "GENQ_SYNCSO__WEBHOOK_SECRET is not set"}, status_code=503)
    body = await request.body()
    try:
        signature = verify_sync_signature(
            secret,
            request.headers.get("sync-signature"),
            body,
            now=receiver.clock(),
            tolerance_s=receiver.settings.webhooks.tolerance_s,
        )
    except Refused as exc:
        log.warning("sync.so webhook refused: %s", exc)
        return JSONResponse({"error": str(exc)}, status_code=401)
    payload = json_object(body)
    generation_id, status = payload.get("id"), payload.get("status")
    if not isinstance(generation_id, str) or not generation_id or not isinstance(status, str):
        raise Unusable("the body is not a generation (an id and a status)")
    if status not in GenerationStatus.TERMINAL:
        return JSONResponse({"ignored": f"status {status}"}, status_code=202)
    result = WaitResult(state="ended", body=payload, source="webhook")
    return await receiver.resolve_once(SPEC.name, signature, generation_id, result)
