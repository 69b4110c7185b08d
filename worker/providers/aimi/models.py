"""What Aimi Sync answers: response models, parsed leniently, and ``raise_for_response``, the one place
Aimi statuses and error bodies become the shared error tree.

Unknown fields are ignored and unknown statuses still parse. Only the status reply is documented
(reference 1.5); the other shapes are [INF] (reference 1.11), so their fields are optional where the
client can do without them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum, nonmember
from typing import Any, Final

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from worker.providers.errors import (
    AuthFailed,
    ConcurrencyLimited,
    ProviderError,
    RateLimited,
    Throttled,
    credentials_refused,
)
from worker.providers.http import build_error, error_class_for_status, redact, request_secrets, snippet

PROVIDER: Final = "aimi"

# [INF] Aimi documents no 429 body (reference 1.9, 1.10). First match wins: the polling cooldown is a
# rate limit, the limit of 10 executions at a time a concurrency limit; any other 429 a rate limit.
THROTTLE_RULES: Final[tuple[tuple[re.Pattern[str], type[Throttled]], ...]] = (
    (re.compile(r"cool-?\s?down|too (?:often|frequent)|\brate\b", re.IGNORECASE), RateLimited),
    (re.compile(r"concurren|parallel|at a time|executions", re.IGNORECASE), ConcurrencyLimited),
)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, coerce_numbers_to_str=True, frozen=True)


class UploadTicket(_Lenient):
    """``sync_upload_init``: the ``taskid`` that names the video through every later stage."""

    # Surface B calls it ``upload_id`` (reference 1.4).
    taskid: str = Field(validation_alias=AliasChoices("taskid", "task_id", "upload_id"))
    max_chunk_bytes: int | None = None


class ChunkAck(_Lenient):
    """``sync_upload_chunk``: the acknowledgement of one chunk."""

    taskid: str | None = None
    chunk_index: int | None = None
    received: int | bool | None = None  # [INF] bytes received, or true


class UploadDone(_Lenient):
    """``sync_upload_complete``: the joined video, ready for analysis."""

    taskid: str | None = None
    status: str | None = None
    size: int | None = None
    sha256: str | None = None


class ExecutionStatus(StrEnum):
    """Documented execution statuses. ``Execution.status`` stays a ``str``: compare against these."""

    PENDING = "pending"
    PROCESSING = "processing"
    FINISHED = "finished"
    ERROR = "error"
    # No active execution for that id: unknown or expired (HTTP 200, reference 1.5).
    INACTIVE = "inactive"

    TERMINAL = nonmember(frozenset({FINISHED, ERROR, INACTIVE}))
    # What the limit of 10 executions at a time counts.
    IN_FLIGHT = nonmember(frozenset({PENDING, PROCESSING}))


class Execution(_Lenient):
    """``sync_status``. ``url`` is the output when finished and the error report (JSON) on error;
    ``queryurl`` the results JSON. The ``inactive`` example names the url ``videourl``: both are read."""

    status: str
    url: str | None = None
    queryurl: str | None = None
    message: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _videourl(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("url") is None and data.get("videourl") is not None:
            return {**data, "url": data["videourl"]}
        return data

    @property
    def is_terminal(self) -> bool:
        """True once the status can no longer change; unknown statuses count as still running."""
        return self.status in ExecutionStatus.TERMINAL

    @property
    def is_success(self) -> bool:
        """True when the output is ready at ``url``."""
        return self.status == ExecutionStatus.FINISHED


class AnalysisReply(_Lenient):
    """``sync_video_analysis``: ``{taskid, analysis}``."""

    analysis: dict[str, Any]


class AudioAnalysisReply(_Lenient):
    """``sync_audio_analysis``: ``{taskid, audio_analysis}`` ([INF]; ``analysis`` accepted too)."""

    audio_analysis: dict[str, Any] = Field(validation_alias=AliasChoices("audio_analysis", "analysis"))


class PlanReply(_Lenient):
    """``sync_generate``: ``{"plan": {"sections": [...], ...}}``; the plan is opaque JSON to genq."""

    plan: dict[str, Any]


class Started(_Lenient):
    """``sync_execute``: the execution id."""

    execid: str = Field(validation_alias=AliasChoices("execid", "exec_id"))


def error_class(status_code: int, message: str) -> type[ProviderError]:
    """The error for a non-2xx status: 429 by ``THROTTLE_RULES``, the rest by the shared table
    (401/403 auth, 400/413/422 bad request, 404 not found, 408 and 5xx unavailable)."""
    if status_code != 429:
        return error_class_for_status(status_code)
    return next((cls for pattern, cls in THROTTLE_RULES if pattern.search(message)), RateLimited)


def raise_for_response(response: httpx.Response, *, secrets: Iterable[str] = ()) -> None:
    """Raise the shared-tree error for a non-2xx Aimi response; return for a 2xx.

    The message is the body's ``message`` and ``detail`` (a string or a list of ``{"msg"}``), else its
    ``error``, else the body text or reason; ``secrets`` and credential headers are scrubbed from it.
    Throttling errors get ``retry_after_s`` from ``Retry-After``.
    """
    if response.is_success:
        return
    response.read()
    message, code = _error_fields(response)
    error = error_class(response.status_code, message)
    if issubclass(error, AuthFailed):  # every call that comes here carries the API token
        message = credentials_refused(message, provider=PROVIDER, title="Aimi")
    raise build_error(
        error,
        redact(message, [*secrets, *request_secrets(response)]),
        provider=PROVIDER,
        status_code=response.status_code,
        code=code,
        request_id=response.headers.get("x-request-id"),
        headers=response.headers,
    )


def error_code(response: httpx.Response) -> str | None:
    """The ``code`` of an error response, as ``raise_for_response`` reads it (for metrics)."""
    return _error_fields(response)[1]


def _error_fields(response: httpx.Response) -> tuple[str, str | None]:
    reason = response.reason_phrase or f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return snippet(response.text) or reason, None
    texts = [text for text in (_text(body.get("message")), _text(body.get("detail"))) if text]
    message = ": ".join(dict.fromkeys(texts)) or _text(body.get("error"))
    code = body.get("code")
    return snippet(message or response.text) or reason, str(code) if isinstance(code, str | int) else None


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(filter(None, map(_text, value)))
    if isinstance(value, dict):
        return _text(value.get("msg") or value.get("message"))
    return ""
