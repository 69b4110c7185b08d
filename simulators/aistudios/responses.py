"""The AI Studios response envelope (reference 2.3), tagged for the simulator's request log.

Success: `{"success": true, "data": ...}`. Failure: `{"success": false, "error": {"code", "msg"}}`.
[INF] HTTP statuses are undocumented: business errors answer 200 with `success: false`, a bad token
401, an unknown project 404, the optional render limit 429.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from simulators.faults import HttpFault
from simulators.provider_base import SimResponse

UNAUTHORIZED = "UNAUTHORIZED"
INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
NOT_FOUND = "NOT_FOUND"
RENDER_FAILED = "RENDER_FAILED"
TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"


def ok(data: Any, project_id: str | None = None) -> SimResponse:
    return SimResponse({"success": True, "data": data}, resource_id=project_id)


def fail(
    status: int,
    code: str,
    msg: str,
    headers: dict[str, str] | None = None,
    project_id: str | None = None,
) -> SimResponse:
    body = {"success": False, "error": {"code": code, "msg": msg}}
    return SimResponse(body, status, headers, error_code=code, resource_id=project_id)


def status_error(status: int, headers: dict[str, str] | None = None) -> SimResponse:
    """The failure envelope named after a status, e.g. 503 -> SERVICE_UNAVAILABLE, "Service Unavailable"."""
    code, msg = _status_names(status)
    return fail(status, code, msg, headers)


def fault_response(fault: HttpFault) -> SimResponse:
    """An injected fault: its own body if given, else the envelope named after the status."""
    if fault.body is None:
        return status_error(fault.status, fault.headers)
    error = fault.body.get("error") if isinstance(fault.body, dict) else None
    given = error.get("code") if isinstance(error, dict) else None
    return SimResponse(
        fault.body, fault.status, fault.headers, error_code=given if isinstance(given, str) else None
    )


def _status_names(status: int) -> tuple[str, str]:
    """(code, msg) for a status, e.g. 503 -> ("SERVICE_UNAVAILABLE", "Service Unavailable")."""
    try:
        known = HTTPStatus(status)
    except ValueError:
        return "ERROR", "Error"
    return known.name, known.phrase
