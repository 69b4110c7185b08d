"""Reading a source video from its URL in byte ranges, so that an upload chunk is streamed from the
source host to Aimi and never held whole in memory or on disk.

Requests are built bare (``httpx.Request``, not ``build_request``) and redirects are followed here, hop by
hop, also bare: no client header, cookie or API token ever reaches a source host. The injected client
serves only for its connection pool, transport and timeouts.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Final

import httpx

from worker.providers.aimi.models import PROVIDER
from worker.providers.errors import BadRequest, ProviderError, ProviderUnavailable
from worker.providers.http import (
    build_error,
    error_class_for_status,
    safe_url,
    send_with_connect_retry,
    snippet,
)

_CONTENT_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_MAX_REDIRECTS: Final = 5
_READ_BYTES: Final = 1024 * 1024
_ERROR_PREFIX_BYTES: Final = 4096


class RangeUnsupported(BadRequest):
    """A source host did not answer a byte range as asked (it ignores ``Range``, or the range is past the
    end). Permanent: the host will answer the same way next time."""


def fetch_range(http: httpx.Client, url: str, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` (inclusive) of ``url``, lazily: the request goes out on the first
    ``next()``, and the response is closed when the iterator ends or is closed.

    The answer must be a 206 whose ``Content-Range`` is the range asked. A 200 (the host ignores
    ``Range``) is taken only when that is cheap: the range starts at 0 and the whole body is exactly it
    (``Content-Length`` = ``end + 1``). Otherwise ``RangeUnsupported`` is raised with the body unread:
    skipping to a later range would fetch the whole prefix again for every chunk. Exactly
    ``end - start + 1`` bytes come out, or ``ProviderUnavailable`` (a cut connection) is raised.
    """
    if start < 0 or end < start:
        raise ValueError(f"invalid byte range {start}-{end}")
    return _fetch(http, url, start, end)


def content_length(http: httpx.Client, url: str) -> int:
    """Size in bytes of ``url``: ``Content-Length`` of a HEAD, else the total of a ``Range: bytes=0-0``
    GET's ``Content-Range`` (signed GET URLs often refuse HEAD), else that GET's 200 ``Content-Length``
    with the body unread. A failing GET raises like a failed download (403 ``AuthFailed``, 404...)."""
    response = _send(http, "HEAD", url, {})
    response.close()
    size = _declared_length(response) if response.is_success else None
    if size is not None:
        return size
    response = _send(http, "GET", url, {"range": "bytes=0-0"})
    try:
        if not response.is_success:
            raise _source_error(response)
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if response.status_code == 206 and match and match[3] != "*":
            return int(match[3])
        size = _declared_length(response) if response.status_code == 200 else None
        if size is None:
            raise _unsupported(f"size of {safe_url(response.request.url)} unknown")
        return size
    finally:
        response.close()


def _fetch(http: httpx.Client, url: str, start: int, end: int) -> Iterator[bytes]:
    response = _send(http, "GET", url, {"range": f"bytes={start}-{end}"})
    try:
        _check_range(response, start, end)
        yield from _body(response, end - start + 1)
    finally:
        response.close()


def _send(http: httpx.Client, method: str, url: str, headers: Mapping[str, str]) -> httpx.Response:
    target = httpx.URL(url)
    for _ in range(_MAX_REDIRECTS + 1):
        request = httpx.Request(
            method,
            target,
            headers={"accept-encoding": "identity", **headers},
            extensions={"timeout": http.timeout.as_dict()},
        )
        response = send_with_connect_retry(http, request, provider=PROVIDER, stream=True)
        location = response.headers.get("location")
        if not (response.is_redirect and location):
            return response
        response.close()
        target = target.join(location)
    raise BadRequest(f"over {_MAX_REDIRECTS} redirects from {safe_url(httpx.URL(url))}", provider=PROVIDER)


def _check_range(response: httpx.Response, start: int, end: int) -> None:
    if not response.is_success:
        raise _source_error(response)
    encoding = response.headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        # Content-Range counts encoded bytes; identity was asked for, so this host is not usable.
        raise _unsupported(f"asked bytes={start}-{end} unencoded, got Content-Encoding {encoding}")
    if response.status_code == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if match and (int(match[1]), int(match[2])) == (start, end):
            return
        got = response.headers.get("content-range") or "no Content-Range"
        raise _unsupported(f"asked bytes={start}-{end}, got 206 with {got}")
    if response.status_code == 200 and start == 0 and _declared_length(response) == end + 1:
        return
    raise _unsupported(f"asked bytes={start}-{end}, got {response.status_code}: the host ignores Range")


def _body(response: httpx.Response, expected: int) -> Iterator[bytes]:
    count = 0
    try:
        for raw in response.iter_bytes(_READ_BYTES):
            chunk = raw[: expected - count]
            count += len(chunk)
            if chunk:
                yield chunk
            if count == expected:
                return
    except httpx.RequestError as exc:
        message = f"source read failed after {count} of {expected} bytes: {type(exc).__name__}"
        raise ProviderUnavailable(message, provider=PROVIDER) from exc
    raise ProviderUnavailable(f"source range truncated: {count} of {expected} bytes", provider=PROVIDER)


def _declared_length(response: httpx.Response) -> int | None:
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return None
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _unsupported(message: str) -> RangeUnsupported:
    return RangeUnsupported(message, provider=PROVIDER, code="range_unsupported")


def _source_error(response: httpx.Response) -> ProviderError:
    prefix = b""
    with contextlib.suppress(httpx.HTTPError):
        for raw in response.iter_bytes(_ERROR_PREFIX_BYTES):
            prefix += raw
            if len(prefix) >= _ERROR_PREFIX_BYTES:
                break
    body = snippet(prefix[:_ERROR_PREFIX_BYTES].decode("utf-8", errors="replace"))
    reason = response.reason_phrase or f"HTTP {response.status_code}"
    message = f"source {response.request.method} {safe_url(response.request.url)}: {reason}"
    return build_error(
        error_class_for_status(response.status_code),
        message + (f": {body}" if body else ""),
        provider=PROVIDER,
        status_code=response.status_code,
        headers=response.headers,
    )
