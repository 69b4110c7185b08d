"""NestJS-style JSON responses of the sync.so simulator, tagged for the request log."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

from simulators.faults import HttpFault

RATE_LIMITED_MESSAGE = "Rate limit exceeded. Please try again later."


class SimResponse(JSONResponse):
    """A JSON response that also tells the request log its error code and generation id."""

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        *,
        error_code: str | None = None,
        generation_id: str | None = None,
    ) -> None:
        super().__init__(content, status_code, headers)
        self.error_code = error_code
        self.generation_id = generation_id


def nest_error(
    status: int,
    message: str | list[str],
    error_code: str | None = None,
    headers: dict[str, str] | None = None,
) -> SimResponse:
    """A NestJS-style error body: statusCode, message (string or list), error, optional errorCode."""
    body: dict[str, Any] = {"statusCode": status, "message": message, "error": _phrase(status)}
    if error_code is not None:
        body["errorCode"] = error_code
    return SimResponse(body, status, headers, error_code=error_code)


def fault_response(fault: HttpFault) -> SimResponse:
    if fault.body is None:
        if fault.status == 429:
            return nest_error(429, RATE_LIMITED_MESSAGE, "rate_limit_exceeded", fault.headers)
        return nest_error(fault.status, _phrase(fault.status), headers=fault.headers)
    code = fault.body.get("errorCode") if isinstance(fault.body, dict) else None
    return SimResponse(
        fault.body, fault.status, fault.headers, error_code=code if isinstance(code, str) else None
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
