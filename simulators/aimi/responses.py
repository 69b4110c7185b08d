"""Aimi Sync error and success bodies, tagged for the simulator's request log.

[INF] The vendor documents no HTTP error bodies (reference 1.10): every error answers JSON
`{"message": "..."}` with 400 (malformed body, unknown id, wrong order), 401 (bad token), 413 (chunk
over the cap) or 429 (cooldown, too many executions, with `Retry-After`).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from simulators.faults import HttpFault
from simulators.limits import retry_after_header
from simulators.provider_base import SimResponse

# The request log's `error_code` of each simulated refusal.
UNAUTHORIZED = "unauthorized"
BAD_REQUEST = "bad_request"
TOO_LARGE = "chunk_too_large"
TOO_MANY = "too_many_executions"
COOLDOWN = "cooldown"
CLIENT_GONE = "client_disconnected"
NOT_FOUND = "not_found"
CODES = {404: NOT_FOUND, 413: TOO_LARGE}


class Rejected(Exception):
    """A request the API refuses: its HTTP status and message (400 unless told)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def ok(body: dict[str, Any], resource_id: str | None = None) -> SimResponse:
    """A 200 JSON answer about `resource_id` (a taskid or execid)."""
    return SimResponse(body, resource_id=resource_id)


def fail(
    status: int,
    message: str,
    code: str = BAD_REQUEST,
    resource_id: str | None = None,
    retry_after_s: float | None = None,
) -> SimResponse:
    """An error answer `{"message"}`, with `Retry-After` when `retry_after_s` is given."""
    headers = None if retry_after_s is None else {"Retry-After": retry_after_header(retry_after_s)}
    return SimResponse({"message": message}, status, headers, error_code=code, resource_id=resource_id)


def rejected(exc: Rejected, resource_id: str | None = None) -> SimResponse:
    """The answer to a Rejected request."""
    return fail(exc.status, exc.message, CODES.get(exc.status, BAD_REQUEST), resource_id)


def throttled(kind: str, max_executions: int, wait_s: float) -> SimResponse:
    """The 429 of the status-poll cooldown (`kind` "cooldown") or of `max_executions` running."""
    if kind == "cooldown":
        return fail(429, "cooldown", COOLDOWN, retry_after_s=wait_s)
    return fail(429, f"at most {max_executions} executions at a time", TOO_MANY, retry_after_s=wait_s)


def status_error(status: int, headers: dict[str, str] | None = None) -> SimResponse:
    """`{"message": <the status's phrase>}` with that status."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return SimResponse({"message": phrase}, status, headers, error_code="injected")


def fault_response(fault: HttpFault) -> SimResponse:
    """An injected fault: its own body if given, else `{"message": <the status's phrase>}`."""
    if fault.body is not None:
        return SimResponse(fault.body, fault.status, fault.headers)
    return status_error(fault.status, fault.headers)
