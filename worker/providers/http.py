"""Provider-neutral HTTP helpers shared by every provider client.

- ``make_http_client``: an ``httpx.Client`` with explicit timeouts and the provider's headers, counting
  every response it receives for ``genq metrics`` (``count_responses``).
- ``send_with_connect_retry``: the only in-place retry. Fast connection failures are retried a few times;
  every other transport failure becomes ``ProviderUnavailable`` for the caller's task retry.
- ``error_class_for_status`` / ``build_error``: the status → error table that provider clients refine
  with what their error bodies say (e.g. rate vs concurrency 429s).
- ``stream_into``: stream a signed output URL into a ``Sink`` (an output store's upload, or a file with
  ``stream_to_file``), with a size cap and a sha256, telling a ``ByteBudget`` (the job's cap over all its
  outputs) how much it writes; the sink commits only a whole, checked body.

Nothing here puts a request header or a URL's query string (signed URLs carry credentials there) into
an error message.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Final, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from storage.base import Sink
from storage.files import AtomicFile
from worker.metrics import record_response
from worker.providers.errors import (
    AuthFailed,
    BadRequest,
    Conflict,
    NotFound,
    PaymentRequired,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Throttled,
)

# Statuses whose meaning does not depend on the provider; anything else is decided by
# ``error_class_for_status``. Provider clients refine 429 by the body (rate vs concurrency).
STATUS_ERRORS: Final[Mapping[int, type[ProviderError]]] = {
    400: BadRequest,
    401: AuthFailed,
    402: PaymentRequired,
    403: AuthFailed,
    404: NotFound,
    408: ProviderUnavailable,
    409: Conflict,
    413: BadRequest,
    422: BadRequest,
    429: RateLimited,
}

# Request headers that carry credentials: their values are scrubbed from any error message.
SENSITIVE_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)

MAX_MESSAGE_CHARS: Final = 500
_DOWNLOAD_CHUNK_BYTES: Final = 1024 * 1024
_ERROR_BODY_PREFIX_BYTES: Final = 4096
# The response hook reads an error body (for its error code) only if it says it is JSON of at most this
# many bytes: an API error, whose body the client reads right after anyway; never an output or a page.
_COUNTED_ERROR_BODY_BYTES: Final = 64 * 1024

ErrorCode = Callable[[httpx.Response], str | None]
# Told how many bytes a download will have written: the declared Content-Length before the body, then
# the running count every _BUDGET_STEP_BYTES, and the final count. Raises OutputTooLarge to stop it.
ByteBudget = Callable[[int], None]
_BUDGET_STEP_BYTES: Final = 8 * 1024 * 1024


_T = TypeVar("_T")


class OutputTooLarge(BadRequest):
    """A download exceeded its byte cap. Permanent: the same output will be as large next time."""


@dataclass(frozen=True)
class Download:
    """A file written completely and atomically by ``stream_to_file``."""

    path: Path
    bytes: int
    sha256: str


def make_http_client(
    base_url: str,
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
    headers: Mapping[str, str],
    transport: httpx.BaseTransport | None = None,
    provider: str | None = None,
    error_code: ErrorCode | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` for one provider API.

    Writes share the read timeout (it bounds each socket operation, not a whole upload); waiting for
    a pooled connection shares the connect timeout. Redirects are not followed on API calls.
    With ``provider``, every response the client receives is counted (``count_responses``), with the
    error code ``error_code`` reads from an error response (the provider's own error-body reader).
    """
    timeout = httpx.Timeout(
        connect=connect_timeout_s, read=read_timeout_s, write=read_timeout_s, pool=connect_timeout_s
    )
    hooks = {"response": [count_responses(provider, error_code)]} if provider else None
    return httpx.Client(
        base_url=base_url, headers=dict(headers), timeout=timeout, transport=transport, event_hooks=hooks
    )


def count_responses(provider: str, error_code: ErrorCode | None = None) -> Callable[[httpx.Response], None]:
    """An httpx response hook that counts each response (API calls, tokens, downloads, each redirect) by
    provider, status and error code, in this process's metrics buffer (no Redis round trip).

    The code is counted where it is cheap: an error status whose body is JSON of a declared length up to
    64 KiB is read here (the client reads it next anyway) and ``error_code`` takes the code from it, as
    the client's error reader does; any other response is counted with code "". So a 2xx that the
    client turns into an error after parsing it (AI Studios ``success: false``) counts as its 2xx."""

    def count(response: httpx.Response) -> None:
        code = None
        if error_code is not None and response.status_code >= 400 and _small_json(response):
            response.read()
            try:
                code = error_code(response)
            except (ValueError, TypeError):
                code = None
        record_response(provider, response.status_code, code or "")

    return count


def _small_json(response: httpx.Response) -> bool:
    length = response.headers.get("content-length", "")
    is_json = "json" in response.headers.get("content-type", "")
    return is_json and length.isdigit() and int(length) <= _COUNTED_ERROR_BODY_BYTES


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    A date in the past (or a negative number) gives 0. Missing or unparseable values give None.
    ``now`` is a Unix timestamp (default: the current time), for HTTP-dates only.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def retry_after_from_headers(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """``retry-after-ms`` (more precise, preferred) or else ``Retry-After``, in seconds."""
    retry_after_ms = parse_retry_after(headers.get("retry-after-ms"))
    if retry_after_ms is not None:
        return retry_after_ms / 1000.0
    return parse_retry_after(headers.get("retry-after"), now=now)


def error_class_for_status(status_code: int) -> type[ProviderError]:
    """The error class for a non-2xx status; an unknown 4xx is permanent, any 5xx retryable."""
    known = STATUS_ERRORS.get(status_code)
    if known is not None:
        return known
    if status_code >= 500:
        return ProviderUnavailable
    if status_code >= 400:
        return BadRequest
    return ProviderError


def build_error(
    error_class: type[ProviderError],
    message: str,
    *,
    provider: str,
    status_code: int | None,
    code: str | None = None,
    request_id: str | None = None,
    headers: httpx.Headers | None = None,
) -> ProviderError:
    """Instantiate ``error_class``; throttling errors get ``retry_after_s`` from the response headers."""
    if issubclass(error_class, Throttled):
        retry_after_s = retry_after_from_headers(headers) if headers is not None else None
        return error_class(
            message,
            retry_after_s=retry_after_s,
            provider=provider,
            status_code=status_code,
            code=code,
            request_id=request_id,
        )
    return error_class(message, provider=provider, status_code=status_code, code=code, request_id=request_id)


def request_secrets(response: httpx.Response) -> list[str]:
    """Credential values the request of ``response`` carried, to scrub from messages."""
    try:
        request = response.request
    except RuntimeError:
        return []
    secrets: list[str] = []
    for name, value in request.headers.items():
        if name.lower() in SENSITIVE_HEADERS and value:
            secrets.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme:
                secrets.append(token)
    return secrets


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***`` (longest first, so a token inside a value goes too)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def snippet(text: str) -> str:
    """A body fragment fit for an error message: whitespace collapsed, length capped."""
    flat = " ".join(text.split())
    if len(flat) > MAX_MESSAGE_CHARS:
        return flat[: MAX_MESSAGE_CHARS - 3] + "..."
    return flat


def safe_url(url: httpx.URL) -> str:
    """``url`` without credentials, query or fragment: a signed URL's query string is a credential."""
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


def send_with_connect_retry(
    client: httpx.Client,
    request: httpx.Request,
    *,
    attempts: int = 3,
    delay_s: float = 0.05,
    provider: str,
    stream: bool = False,
    auth: httpx.Auth | None = None,
) -> httpx.Response:
    """Send ``request`` (through ``auth``'s flow if given, else the client's), retrying in place only
    connection failures that fail fast.

    ``ConnectError`` and ``ConnectTimeout`` mean the request never reached the provider, so resending
    is safe even for a create; they are retried up to ``attempts`` times in all, ``delay_s`` apart.
    Any other transport failure (read timeout, reset, protocol error...) and the last connection
    failure raise ``ProviderUnavailable``: slower recovery is the task's retry with a countdown.
    The response is returned whatever its status; translating statuses is the caller's job.
    """
    return _with_connect_retry(
        lambda: client.send(request, stream=stream, auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth),
        request,
        attempts=attempts,
        delay_s=delay_s,
        provider=provider,
    )


def _with_connect_retry(
    send: Callable[[], httpx.Response],
    request: httpx.Request,
    *,
    attempts: int,
    delay_s: float,
    provider: str,
) -> httpx.Response:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return send()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if attempt == attempts:
                raise _unavailable(exc, request, provider, f" after {attempts} attempts") from exc
            time.sleep(delay_s)
        except httpx.RequestError as exc:
            raise _unavailable(exc, request, provider) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _unavailable(
    exc: httpx.RequestError, request: httpx.Request, provider: str, suffix: str = ""
) -> ProviderUnavailable:
    detail = snippet(str(exc)) or "no detail"
    message = f"{type(exc).__name__} on {request.method} {safe_url(request.url)}{suffix}: {detail}"
    return ProviderUnavailable(message, provider=provider)


def stream_to_file(
    client: httpx.Client,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    provider: str,
    budget: ByteBudget | None = None,
) -> Download:
    """``stream_into`` a file: ``dest`` is written whole (``<dest>.part``, fsynced, renamed) or not at all."""
    sink = _FileDownload(dest)
    return stream_into(client, url, sink, max_bytes=max_bytes, provider=provider, budget=budget)


class _FileDownload(AtomicFile):
    def commit(self, count_bytes: int, sha256: str) -> Download:  # type: ignore[override]
        return Download(path=super().commit(count_bytes, sha256), bytes=count_bytes, sha256=sha256)


def stream_into(
    client: httpx.Client,
    url: str,
    sink: Sink[_T],
    *,
    max_bytes: int,
    provider: str,
    budget: ByteBudget | None = None,
) -> _T:
    """Stream ``url`` into ``sink`` (a file, an output store's upload); at most ``max_bytes`` bytes, and
    at most what ``budget`` (if given) allows. Returns what the sink's ``commit`` returns.

    ``url`` is a signed absolute URL (S3/GCS-style). The request is built from scratch with
    ``httpx.Request`` rather than ``client.build_request``, so none of the client's default headers
    (the API key among them) or cookies are sent, and it is sent with ``auth=None``; the client is
    reused only for its connection pool, transport and timeouts. A second client would work too, but
    an injected client (tests, simulators) would then need a second injected transport.
    Redirects are followed: they hop only between storage hosts, and carry the same bare headers.

    Bytes go to the sink as they arrive, hashed (SHA-256) and counted; the sink commits them only once
    the body ended, was as long as declared and within the caps, and with its count and hash. A
    ``Content-Length`` over the cap, or a running count over it, raises ``OutputTooLarge``; so does
    ``budget``, told the declared length first and then the count as it grows.
    Error statuses map like API errors (an expired signature is a 403, i.e. ``AuthFailed``: fetch the
    generation again for a fresh URL). The sink is aborted on any failure.
    """
    request = httpx.Request(
        "GET",
        url,
        headers={"accept": "*/*", "accept-encoding": "identity"},
        extensions={"timeout": client.timeout.as_dict()},
    )
    response = _send_download(client, request, provider)
    try:
        return _write_body(response, sink, max_bytes=max_bytes, provider=provider, budget=budget)
    finally:
        response.close()


def _send_download(client: httpx.Client, request: httpx.Request, provider: str) -> httpx.Response:
    response = _with_connect_retry(
        lambda: client.send(request, stream=True, auth=None, follow_redirects=True),
        request,
        attempts=3,
        delay_s=0.05,
        provider=provider,
    )
    if not response.is_success:
        try:
            raise _download_error(response, provider)
        finally:
            response.close()
    return response


def _download_error(response: httpx.Response, provider: str) -> ProviderError:
    prefix = bytearray()
    with contextlib.suppress(httpx.HTTPError):
        for chunk in response.iter_bytes():
            prefix += chunk
            if len(prefix) >= _ERROR_BODY_PREFIX_BYTES:
                break
    body = snippet(prefix[:_ERROR_BODY_PREFIX_BYTES].decode("utf-8", errors="replace"))
    reason = response.reason_phrase or "error"
    message = redact(f"download failed: {reason}" + (f": {body}" if body else ""), request_secrets(response))
    return build_error(
        error_class_for_status(response.status_code),
        message,
        provider=provider,
        status_code=response.status_code,
        request_id=response.headers.get("x-request-id") or response.headers.get("x-amz-request-id"),
        headers=response.headers,
    )


def _write_body(
    response: httpx.Response, sink: Sink[_T], *, max_bytes: int, provider: str, budget: ByteBudget | None
) -> _T:
    declared_bytes = _content_length(response)
    if declared_bytes is not None and declared_bytes > max_bytes:
        raise _too_large(f"Content-Length {declared_bytes} exceeds the cap of {max_bytes} bytes", provider)
    told = 0
    if budget is not None and declared_bytes is not None:
        budget(told := declared_bytes)
    digest = hashlib.sha256()
    count_bytes = 0
    sink.start(declared_bytes)
    try:
        try:
            for chunk in response.iter_bytes(_DOWNLOAD_CHUNK_BYTES):
                count_bytes += len(chunk)
                if count_bytes > max_bytes:
                    raise _too_large(f"download exceeds the cap of {max_bytes} bytes", provider)
                if budget is not None and count_bytes >= told + _BUDGET_STEP_BYTES:
                    budget(told := count_bytes)
                digest.update(chunk)
                sink.write(chunk)
        except httpx.RequestError as exc:
            raise _unavailable(exc, response.request, provider, " while downloading") from exc
        # A body shorter than declared is a cut connection, not an output: worth another try.
        identity = response.headers.get("content-encoding", "identity").lower() == "identity"
        if identity and declared_bytes is not None and count_bytes != declared_bytes:
            raise ProviderUnavailable(
                f"download truncated: {count_bytes} of {declared_bytes} bytes", provider=provider
            )
        if budget is not None and count_bytes != told:
            budget(count_bytes)
        return sink.commit(count_bytes, digest.hexdigest())
    except BaseException:
        sink.abort()
        raise


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _too_large(message: str, provider: str) -> OutputTooLarge:
    return OutputTooLarge(message, provider=provider, code="output_too_large")


def parse_body(response: httpx.Response, adapter: TypeAdapter[_T], *, provider: str) -> _T:
    """A 2xx body as ``adapter`` reads it. One it cannot read is the provider misbehaving, not the
    request being wrong: ``ProviderUnavailable``, so the stage retries later."""
    try:
        return adapter.validate_json(response.content)
    except ValidationError as exc:
        where = f"{response.request.method} {response.request.url.path}"
        raise ProviderUnavailable(
            f"unreadable {where} response: "
            + snippet(str(exc.errors(include_url=False, include_input=False))),
            provider=provider,
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from None
