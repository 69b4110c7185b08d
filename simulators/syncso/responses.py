"""NestJS-style JSON responses of the sync.so simulator, tagged for the request log."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from simulators.faults import HttpFault
from simulators.provider_base import SimResponse

RATE_LIMITED_MESSAGE = "Rate limit exceeded. Please try again later."


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


def rate_limited(headers: dict[str, str] | None = None) -> SimResponse:
    """The rate limiter's 429 (`errorCode` "rate_limit_exceeded"); `headers` may carry Retry-After."""
    return nest_error(429, RATE_LIMITED_MESSAGE, "rate_limit_exceeded", headers)


def concurrency_limited(limit: int) -> SimResponse:
    """The plan-concurrency 429 of `POST /v2/generate` (`errorCode` "concurrency_limit_reached")."""
    message = f"Concurrency limit reached. Your plan allows {limit} concurrent generations."
    return nest_error(429, message, "concurrency_limit_reached")


def server_error(status: int, headers: dict[str, str] | None = None) -> SimResponse:
    """The NestJS error of a 5xx (or any) status, named by its phrase, without errorCode."""
    return nest_error(status, _phrase(status), headers=headers)


def uri_too_long() -> SimResponse:
    """414 for a request target over `max_url_bytes`; like a server's request-line cap, no errorCode."""
    return SimResponse({"statusCode": 414, "message": "URI Too Long", "error": "URI Too Long"}, 414)


def fault_response(fault: HttpFault) -> SimResponse:
    """An injected fault: its own body if given, else the NestJS error of its status."""
    if fault.body is None:
        if fault.status == 429:
            return rate_limited(fault.headers)
        return server_error(fault.status, fault.headers)
    code = fault.body.get("errorCode") if isinstance(fault.body, dict) else None
    return SimResponse(
        fault.body, fault.status, fault.headers, error_code=code if isinstance(code, str) else None
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
