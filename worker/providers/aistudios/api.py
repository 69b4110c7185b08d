"""What every AI Studios v3 call shares: the endpoint table and the answer envelope.

``unwrap`` is the one place the envelope ``{"success", "data" | "error": {"code", "msg"}}`` and the HTTP
status become data or the shared error tree. A module of its own so that the token request
(``tokens.py``) reads it without importing the client, which imports the tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import httpx

from worker.providers.errors import (
    AuthFailed,
    BadRequest,
    JobRejected,
    ProviderError,
    ProviderUnavailable,
    credentials_refused,
)
from worker.providers.http import build_error, error_class_for_status, redact, request_secrets, snippet

PROVIDER: Final = "aistudios"

# (method, path) of every call (reference 2.2, 2.4): a correction is one line here. All are [DOC] (the
# v3 reference); the HTTP statuses of their errors are [INF] (undocumented, reference 2.3/2.8).
ENDPOINTS: Final[Mapping[str, tuple[str, str]]] = {
    "token": ("POST", "/api/odin/v3/auth/token"),  # [DOC] auth.md
    "create": ("POST", "/api/odin/v3/editor/project"),  # [DOC] create-project.md
    "export": ("POST", "/api/odin/v3/editor/project/export"),  # [DOC] export-project
    "project": ("GET", "/api/odin/v3/editor/project/{project_id}"),  # [DOC] get-project
    "delete": ("DELETE", "/api/odin/v3/editor/project"),  # [DOC] body {"ids": [...]}
    # [DOC] v3 reference; the getting-started page still shows the v2 path (reference 2.1 CONFLICT).
    "progress": ("GET", "/api/odin/v3/editor/progress/{project_id}"),
    "models": ("GET", "/api/odin/v3/model"),  # [DOC] model.md
}

# Error codes that say more than the status. [INF] the token endpoint's bad-credentials code.
CODE_ERRORS: Final[Mapping[str, type[ProviderError]]] = {"INVALID_CREDENTIALS": AuthFailed}
_REQUEST_ID_HEADERS: Final = ("x-request-id", "x-amzn-requestid")


def error_class(status_code: int, code: str | None, *, render_status: bool = False) -> type[ProviderError]:
    """The error for a non-2xx status or a 2xx ``success: false``. A known ``code`` decides first; a 2xx
    failure is a refused request (``BadRequest``), or on the progress call a failed render (``JobRejected``);
    other statuses follow the shared table (401/403 auth, 402, 404, 408/5xx unavailable, 429, 4xx bad)."""
    if code is not None and code in CODE_ERRORS:
        return CODE_ERRORS[code]
    if 200 <= status_code < 300:
        return JobRejected if render_status else BadRequest
    return error_class_for_status(status_code)


def unwrap(response: httpx.Response, *, render_status: bool = False, secrets: Iterable[str] = ()) -> Any:
    """``data`` of a successful envelope, else raise the shared-tree error with ``secrets`` (and credential
    headers) scrubbed. A 2xx that is not an envelope is ``ProviderUnavailable``: the provider misbehaved."""
    try:
        body = response.json()
    except ValueError:
        body = None
    secrets = [*secrets, *request_secrets(response)]
    request_id = next(filter(None, map(response.headers.get, _REQUEST_ID_HEADERS)), None)
    error: type[ProviderError]
    if response.is_success and not (isinstance(body, dict) and isinstance(body.get("success"), bool)):
        error, code = ProviderUnavailable, None
        message = f"{response.request.url.path} answered without an envelope: {snippet(response.text)}"
    elif response.is_success and body["success"]:
        return body.get("data")
    else:
        message, code = _error_fields(body, response)
        error = error_class(response.status_code, code, render_status=render_status)
        if issubclass(error, AuthFailed):
            message = credentials_refused(message, provider=PROVIDER, title="AI Studios")
    raise build_error(
        error,
        redact(message, secrets),
        provider=PROVIDER,
        status_code=response.status_code,
        code=code,
        request_id=request_id,
        headers=response.headers,
    )


def error_code(response: httpx.Response) -> str | None:
    """The ``error.code`` of an error response, as ``unwrap`` reads it (for metrics)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return _error_fields(body, response)[1]


def _error_fields(body: Any, response: httpx.Response) -> tuple[str, str | None]:
    """(message, code) from ``{"error": {"code", "msg"}}`` or whatever else an error body holds."""
    reason = response.reason_phrase or f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return snippet(response.text) or reason, None
    error = body.get("error")
    fields = error if isinstance(error, dict) else body
    raw_message = fields.get("msg") or fields.get("message") or (error if isinstance(error, str) else None)
    code = fields.get("code")
    code = str(code) if isinstance(code, str | int) and code != "" else None
    return snippet(str(raw_message)) if raw_message else reason, code
