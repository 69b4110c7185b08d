"""AI Studios webhook deliveries (``POST /aistudios`` of ``genq webhooks``).

AI Studios signs nothing and its payload (``progress``, ``credit``, ``backendTaskId``, ``download_url``)
does not name the project (reference 2.7). So each render gets its own URL,
``<GENQ_WEBHOOKS__BASE_URL>/aistudios?job=<job id>&token=<token>``, where the token is an HMAC of the job
id keyed with ``GENQ_AISTUDIOS__WEBHOOK_SECRET``: a delivery counts only if its token matches (constant
time). Even then its body is not trusted: a delivery at 100 % only moves the render's next progress
check to now, so the sweep reads the end (and the download URL) from AI Studios itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas import layout as L
from worker.providers.aistudios.spec import SPEC
from worker.webhooks import Receiver, Unusable, json_object

log = logging.getLogger(__name__)

PROJECT_FIELD = L.PROVIDER_ID_PREFIX + "project"


def webhook_token(secret: str, job_id: str) -> str:
    return hmac.new(secret.encode(), f"{SPEC.name}:{job_id}".encode(), hashlib.sha256).hexdigest()[:32]


def webhook_url(base: str | None, secret: str, job_id: str) -> str | None:
    """The job's own webhook URL, or None when webhooks are not configured."""
    if not base or not secret:
        return None
    return f"{base}?{urlencode({'job': job_id, 'token': webhook_token(secret, job_id)})}"


async def receive(receiver: Receiver, request: Request) -> Response:
    secret = SPEC.section(receiver.settings).webhook_secret.get_secret_value()
    if not secret:
        return JSONResponse({"error": "GENQ_AISTUDIOS__WEBHOOK_SECRET is not set"}, status_code=503)
    job_id = request.query_params.get("job", "")
    token = request.query_params.get("token", "")
    if not job_id or not hmac.compare_digest(token.encode(), webhook_token(secret, job_id).encode()):
        log.warning("AI Studios webhook refused: bad token")
        return JSONResponse({"error": "bad token"}, status_code=401)
    progress = _progress(json_object(await request.body()).get("progress", 0))
    if progress < 100:
        return JSONResponse({"ignored": f"progress {progress:g}"}, status_code=202)
    project_id = await run_in_threadpool(receiver.redis.hget, L.job_key(job_id), PROJECT_FIELD)
    if not isinstance(project_id, bytes | str):
        return JSONResponse({"ignored": "no such render"}, status_code=202)
    checking = await receiver.check_now(SPEC.name, L.text(project_id))
    log.info("AI Studios webhook for job %s: progress %g, check now: %s", job_id, progress, checking)
    return JSONResponse({"checking": checking})


def _progress(value: Any) -> float:
    """A report's ``progress`` as a finite number (a number or a numeric string), else ``Unusable``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Unusable("progress is not a number")
    try:
        progress = float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
        raise Unusable("progress is not a number") from None
    if not math.isfinite(progress):
        raise Unusable("progress is not a finite number")
    return progress
